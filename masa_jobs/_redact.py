"""Passwords out of text: in URLs, DSNs and ``key=value`` secrets, wherever they appear.

Exception texts carry connection strings (a driver's "cannot connect to
postgresql://app:S3cret@db/app"), tokenised URLs and keyword DSNs, and they
end up in ``last_error``, in logs and on terminals. ``redact`` replaces each
secret it recognises by ``***`` and leaves the rest of the text as it was, so
that the message still says what went wrong and where:

- the password of a URL's user info, whatever its scheme, including one
  holding an unescaped ``@``, ``:`` or percent-escapes
  (``postgresql://app:***@db/app``, ``redis://:***@cache:6379/0``); for
  ``http(s)``/``ws(s)`` URLs a user name alone too, since tokens travel that way
  (``https://***@github.com/...``);
- query parameters and keyword-form (libpq) values whose key names a secret
  (``?password=***``, ``&sslpassword=***``, ``password=***``,
  ``password='***'``, ``PGPASSWORD=***``, ``api_key=***``, ``token=***``);
- the same keys in a JSON object or a Python dict (``"password": "***"``).

It errs on the side of hiding too much: a URL whose text after ``host:`` runs
into an ``@`` further on is taken as a password holding an unescaped ``/``.
The ``describe_*`` helpers go the other way: they build an address from a
parsed URL and keep only what names the server (user, host, port, database).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "MASK",
    "GuardedRedactor",
    "describe_postgres_dsn",
    "describe_redis_url",
    "import_redactor",
    "redact",
]

logger = logging.getLogger("masa_jobs.redact")

MASK = "***"

# Keys whose value is a secret: the key ends with one of these words.
_SECRET_WORDS = r"(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|signature|credential)"
# A bounded prefix keeps the search linear on long runs of word characters.
_SECRET_KEY = rf"[\w.-]{{0,40}}?{_SECRET_WORDS}"
# A scheme of at most 32 characters, not glued to a longer word before it.
_SCHEME = re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://", re.IGNORECASE)
# A run of URLs: from a scheme to the next white space (split at each scheme).
_URLS = re.compile(rf"{_SCHEME.pattern}\S*", re.IGNORECASE)
_QUERY_SECRET = re.compile(rf"(?<=[?&;])(?P<key>{_SECRET_KEY})=(?P<value>[^&;#\s]+)", re.IGNORECASE)
# Quoted texts as unrolled loops ("[^"\\]*(?:\\.[^"\\]*)*"): linear, however long.
_MAPPING_SECRETS = tuple(
    re.compile(
        rf"(?P<head>[\"'](?P<key>{_SECRET_KEY})[\"']\s*:\s*{q})"
        rf"(?P<value>[^{q}\\]*(?:\\.[^{q}\\]*)*){q}",
        re.IGNORECASE,
    )
    for q in "\"'"
)
_KEYWORD_SECRET = re.compile(
    rf"(?<![\w.?&;-])(?P<head>(?P<key>{_SECRET_KEY})\s*=\s*)"
    r"(?P<value>'[^'\\]*(?:\\.[^'\\]*)*'?|\"[^\"\\]*(?:\\.[^\"\\]*)*\"?|(?:[^\s'\"\\]|\\.)[^\s\\]*(?:\\.[^\s\\]*)*)",
    re.IGNORECASE,
)
# What an address that cannot be parsed shows instead of itself.
_UNREADABLE = "(an address that cannot be read)"
# Schemes whose user name alone is a credential (https://TOKEN@github.com/...).
_TOKEN_AS_USER_SCHEMES = frozenset({"http", "https", "ws", "wss", "git+http", "git+https"})


def redact(text: str) -> str:
    """``text`` with every password and secret it recognises replaced by ``***``."""
    if "://" in text:
        text = _URLS.sub(_urls_without_passwords, text)
    text = _QUERY_SECRET.sub(_masked_query_value, text)
    for mapping_secret in _MAPPING_SECRETS:
        text = mapping_secret.sub(_masked_mapping_value, text)
    return _KEYWORD_SECRET.sub(_masked_keyword_value, text)


def _urls_without_passwords(match: re.Match[str]) -> str:
    # "redis://:a@h1,redis://:b@h2": each URL of the run on its own.
    run = match[0]
    starts = [found.start() for found in _SCHEME.finditer(run)]
    ends = [*starts[1:], len(run)]
    return "".join(
        _url_without_password(run[start:end]) for start, end in zip(starts, ends, strict=True)
    )


def _url_without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    at = _end_of_user_info(rest)
    if at < 0:
        return url
    return f"{scheme}://{_masked_user_info(scheme.lower(), rest[:at])}{rest[at:]}"


def _end_of_user_info(rest: str) -> int:
    """Where the user info of a URL (the text after ``scheme://``) ends, or -1."""
    authority_end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if found >= 0:
            authority_end = min(authority_end, found)
    authority = rest[:authority_end]
    at = authority.rfind("@")
    if at >= 0:
        return at
    # "user:pa/ss@host": a password with an unescaped "/", "?" or "#" cuts the
    # authority short; the "@" further on shows where it really ends.
    if ":" in authority and not authority.startswith("["):
        return rest.rfind("@")
    return -1


def _masked_user_info(scheme: str, user_info: str) -> str:
    user, colon, password = user_info.partition(":")
    if colon:
        return f"{user}:{MASK}" if password else user_info
    if scheme in _TOKEN_AS_USER_SCHEMES and user_info:
        return MASK
    return user_info


def _masked_query_value(match: re.Match[str]) -> str:
    return f"{match['key']}={MASK}"


def _masked_mapping_value(match: re.Match[str]) -> str:
    quote = match[0][-1]
    return f"{match['head']}{MASK}{quote}"


def _masked_keyword_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "'\"" else ""
    return f"{match['head']}{quote}{MASK}{quote}"


# -- addresses -------------------------------------------------------------------------


def describe_postgres_dsn(dsn: str) -> str:
    """``user@host:port/database`` of a PostgreSQL URL, for messages and logs.

    A socket directory (``?host=/var/run/postgresql``) shows as ``unix:/dir``.
    Nothing else of the URL is kept: no password, no query parameter.
    """
    try:
        parts = urlsplit(dsn)
    except ValueError:  # a bracketed host that is no IPv6 address
        return _UNREADABLE
    user_info, _, host_spec = parts.netloc.rpartition("@")
    query = parse_qs(parts.query)
    user = unquote(user_info.partition(":")[0]) or _last(query, "user")
    host = _host_name(unquote(host_spec)) if host_spec else _query_hosts(query)
    database = unquote(parts.path.lstrip("/")) or _last(query, "dbname") or _last(query, "database")
    return f"{user + '@' if user else ''}{host}{'/' + database if database else ''}"


def describe_redis_url(url: str, default_port: int) -> str:
    """``redis://host:port/db`` (or ``unix:///path``) of a Redis URL: no user, no password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _UNREADABLE
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host_spec = parts.netloc.rpartition("@")[2]
    host, _, port = host_spec.rpartition(":") if _has_port(host_spec) else (host_spec, "", "")
    return f"{parts.scheme}://{host or 'localhost'}:{port or default_port}{parts.path}"


def _has_port(host_spec: str) -> bool:
    # "[::1]" has colons but no port; "[::1]:6380" and "host:6380" have one.
    return ":" in host_spec.rpartition("]")[2]


def _query_hosts(query: dict[str, list[str]]) -> str:
    """``h1:5432,h2:5433`` from ``?host=h1,h2&port=5432,5433``."""
    hosts = _last(query, "host").split(",")
    ports = _last(query, "port").split(",")
    ports += [ports[-1]] * (len(hosts) - len(ports))
    shown = []
    for host, port in zip(hosts, ports, strict=False):
        shown.append(f"{_host_name(host)}:{port}" if port else _host_name(host))
    return ",".join(shown)


def _host_name(host: str) -> str:
    # A PostgreSQL "host" that is a path is the directory of a Unix socket.
    return f"unix:{host}" if host.startswith("/") else host or "localhost"


def _last(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    return values[-1] if values else ""


# -- a redaction hook that cannot break its caller ----------------------------------


@dataclass(frozen=True)
class GuardedRedactor:
    """An application's ``redact_error``, made safe to call where a failure would
    stop a worker: if it raises or returns no ``str``, ``redact``'s result is used
    and the problem is logged, once per hook."""

    redactor: Callable[[str], str]

    def __call__(self, text: str) -> str:
        try:
            result = self.redactor(text)
        except Exception as exc:
            # No traceback: the exception may quote the text it was given.
            self._report(f"raised {type(exc).__name__}: {redact(str(exc))}")
            return redact(text)
        if not isinstance(result, str):
            self._report(f"returned a {type(result).__name__}, not a str")
            return redact(text)
        return result

    def _report(self, what: str) -> None:
        if id(self.redactor) in _REPORTED:
            return
        _REPORTED.add(id(self.redactor))
        logger.error(
            "options.redact_error %r %s; masa-jobs' own redaction was used instead: fix the "
            "function",
            self.redactor,
            what.splitlines()[0] if what else what,
        )


# The hooks whose failure was logged already: one report, not one per job.
_REPORTED: set[int] = set()


def import_redactor(path: str) -> Callable[[str], str]:
    """The function named ``package.module:function`` (or ``package.module.function``)."""
    module_name, colon, name = path.partition(":")
    if not colon:
        module_name, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"cannot import {path!r} ({type(exc).__name__}: {exc}): give a function, or "
            "its import path as 'package.module:function'"
        ) from None
    if not callable(found):
        raise ValueError(f"{path!r} is a {type(found).__name__}, not a function")
    return cast("Callable[[str], str]", found)
