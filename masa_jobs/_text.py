"""Error text a store will accept, of a size it should keep.

Exception messages are arbitrary: a NUL character (PostgreSQL refuses it in
text), a lone surrogate (not encodable as UTF-8), or a 10 MB message that
would bloat every row it touches. Outcomes are cleaned before they are
written so that one odd exception cannot make the store refuse a batch.
"""

from __future__ import annotations

__all__ = ["clean_error"]

# What marks the cut in a shortened text; the count says how much is gone.
_CUT_MARK = "\n... [{cut} characters cut] ...\n"
# The head of a traceback names the failing call chain and the tail names the
# exception: keep a third of the room for the head and the rest for the tail.
_HEAD_SHARE = 3


def clean_error(text: str, limit: int) -> str:
    """``text`` without NULs or lone surrogates, at most about ``limit`` characters.

    NUL becomes the visible ``\\x00`` and a lone surrogate its ``\\udXXX``
    escape; a text over the limit keeps its head and its tail.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    head = limit // _HEAD_SHARE
    tail = limit - head
    cut = len(text) - head - tail
    return text[:head] + _CUT_MARK.format(cut=cut) + text[-tail:]
