"""Text from the store made safe to print, and long text shortened visibly.

A job's id, name, args and last error are whatever was stored. A hostile or
broken job can hold ESC sequences that recolour the terminal, clear it or set
its title, a carriage return that overwrites the line it is on, a NUL, or a
bidi override (U+202E) that makes text read backwards. The operator commands
print every such character as a visible escape (``\\x1b``, ``\\r``,
``\\u202e``); JSON output keeps them as JSON escapes (``\\u001b``), so that a
script that parses it gets the stored text back exactly.

"Such characters" are the Unicode categories of controls (Cc, C1 included),
format characters (Cf: bidi controls, zero-width characters), lone surrogates
(Cs, which could not even be encoded) and line and paragraph separators (Zl,
Zp). Backslashes are left alone: a traceback's Windows paths stay readable,
and ``--json`` is there for the exact text.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Any

__all__ = ["json_text", "printable", "shorten"]

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BMP_END = 0x10000


def _display_escape(char: str) -> str:
    """Python's spelling: ``\\r``, ``\\x1b``, ``\\u202e``, ``\\U000e0001``."""
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < _BMP_END else f"\\U{code:08x}"


def _json_escape(char: str) -> str:
    """JSON's spelling, a surrogate pair beyond the BMP: parses back to ``char``."""
    code = ord(char)
    if code < _BMP_END:
        return f"\\u{code:04x}"
    code -= _BMP_END
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class _Escapes(dict[int, str]):
    """A ``str.translate`` table, filled in per character as they are met."""

    def __init__(self, escape: Callable[[str], str], keep: str = "") -> None:
        super().__init__()
        self._escape = escape
        self._keep = keep

    def __missing__(self, code: int) -> str:
        char = chr(code)
        unsafe = unicodedata.category(char) in _UNSAFE_CATEGORIES and char not in self._keep
        self[code] = value = self._escape(char) if unsafe else char
        return value


_ONE_LINE = _Escapes(_display_escape)
_LINES = _Escapes(_display_escape, keep="\n")
# json.dumps already escapes C0 controls inside strings, so a raw newline in
# its output is indentation, never data.
_JSON = _Escapes(_json_escape, keep="\n")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or format character shown as an escape."""
    if text.isprintable():  # False for every character escaped here: the common case is free
        return text
    return text.translate(_LINES if keep_newlines else _ONE_LINE)


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON that is safe on a terminal and parses back to ``value``."""
    return json.dumps(value, ensure_ascii=False, indent=indent).translate(_JSON)


def shorten(text: str, limit: int, hint: str, *, lines: bool = False) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and end
    around a mark saying how many characters were cut and ``hint``.

    The end gets two thirds: in a traceback it holds the innermost frames and
    the exception's message (the mark is the one the worker puts in a
    ``last_error`` it caps, with ``hint`` added). With ``lines`` the cuts fall on line breaks
    where there is one nearby, and the mark is a line of its own.
    """
    if len(text) <= limit:
        return text
    head_size = limit // 3
    head, tail = text[:head_size], text[len(text) - (limit - head_size) :]
    if lines:
        head, tail = _whole_lines(head, tail)
    cut = len(text) - len(head) - len(tail)
    mark = f"... [{cut} characters cut; {hint}] ..."
    if not lines:
        return f"{head} {mark} {tail}"
    return "\n".join((head.removesuffix("\n"), mark, tail))


def _whole_lines(head: str, tail: str) -> tuple[str, str]:
    """``head`` up to its last line break and ``tail`` from its first, each only
    when that keeps at least half of it (one very long line is cut anywhere)."""
    end = head.rfind("\n", len(head) // 2)
    start = tail.find("\n", 0, len(tail) // 2)
    return (head if end < 0 else head[: end + 1]), (tail if start < 0 else tail[start + 1 :])
