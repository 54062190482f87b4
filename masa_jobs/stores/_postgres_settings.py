"""Settings of the PostgreSQL store: the ``store`` section for ``backend: postgres``.

``dsn`` is checked here, when the container builds the store, so that a DSN
asyncpg would misread fails at ``MasaApp.build`` with a message that never
quotes it: asyncpg splits the user info at the *first* ``@`` while every URL
parser splits at the last, so an unescaped ``@`` in a password sends it to
another host. A libpq keyword string (``host=db user=app password=...``) is
converted to the URL form asyncpg reads, percent-escaping every part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from .._redact import describe_postgres_dsn
from ..exceptions import ConfigurationError
from ._postgres_sql import check_schema_name

__all__ = ["PostgresSettings", "describe_dsn"]

URL_FORM = "postgresql://user:password@host:5432/database"
_SCHEMES = ("postgresql", "postgres")
# libpq keywords asyncpg understands as URL query parameters; the others
# (hostaddr, connect_timeout, options, keepalives...) it would send to the
# server as settings, which refuses them.
_KEYWORD_QUERY_KEYS = frozenset(
    {
        "application_name",
        "gsslib",
        "krbsrvname",
        "passfile",
        "service",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslpassword",
        "sslrootcert",
        "target_session_attrs",
    }
)
_KEYWORD_URL_KEYS = frozenset({"host", "port", "user", "password", "dbname"})
# One "key = value" of a keyword string: a value is single-quoted (spaces
# allowed) or runs to the next space; a backslash escapes the next character.
_KEYWORD_SETTING = re.compile(
    r"\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"
    r"(?P<value>'(?:\\.|[^'\\])*'|(?!')(?:\\.|[^\s\\])*)(?=\s|$)",
    re.DOTALL,
)
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_PORTS = re.compile(r"\d+(,\d+)*")


class PostgresSettings(BaseModel):
    """The ``store`` section for ``backend: postgres``; durations in seconds."""

    # The DSN holds a password: keep it out of repr() and validation errors.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    dsn: str = Field(
        repr=False,
        description=f"{URL_FORM}, or a libpq keyword string (host=... dbname=...)",
    )
    db_schema: str = Field(
        default="masa_jobs", alias="schema", description="PostgreSQL schema of the tables."
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect.")
    command_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a statement may take before it is abandoned."
    )
    pool_min_size: int = Field(default=1, ge=0, description="Connections kept open.")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections at once.")
    relaxed_commit: bool = Field(
        default=True,
        description="Claims, lease renewals and outcomes do not wait for the WAL flush.",
    )

    @field_validator("dsn")
    @classmethod
    def _url_asyncpg_reads_as_meant(cls, value: str) -> str:
        return normalize_dsn(value)

    @field_validator("db_schema")
    @classmethod
    def _plain_schema_name(cls, value: str) -> str:
        return check_schema_name(value)

    @model_validator(mode="after")
    def _pool_bounds(self) -> PostgresSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PostgresSettings:
        """Validate the ``store`` section; any problem is a ``ConfigurationError``."""
        data = {key: value for key, value in values.items() if key != "backend"}
        if not data.get("dsn"):
            raise ConfigurationError(
                "store.dsn is not set: set it in the store config or MASA_JOBS_STORE__DSN "
                f"({URL_FORM})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problem = _configuration_error(exc)
        # Raised here, not in the except block: the ValidationError, which
        # would hang on as __context__, holds the DSN.
        raise problem


def normalize_dsn(dsn: str) -> str:
    """``dsn`` as a URL asyncpg reads as meant; ``ValueError`` (never quoting it) if none."""
    dsn = dsn.strip()
    if not _URL_START.match(dsn):
        if "=" not in dsn:
            raise ValueError(f"not a PostgreSQL URL: write it as {URL_FORM}")
        dsn = _url_from_keywords(_parse_keywords(dsn))
    _check_url(dsn)
    return dsn


def _parse_keywords(text: str) -> dict[str, str]:
    """The settings of a libpq keyword string, unescaped."""
    values: dict[str, str] = {}
    position = 0
    while text[position:].strip():
        match = _KEYWORD_SETTING.match(text, position)
        if match is None:
            raise ValueError(
                "this libpq keyword string cannot be read: write each setting as key=value, "
                "and a value with spaces or quotes in single quotes ('...', \\' for a quote); "
                f"or use the URL form {URL_FORM}"
            )
        value = match["value"]
        if value.startswith("'"):
            value = value[1:-1]
        values[match["key"]] = _ESCAPED.sub(r"\1", value)
        position = match.end()
    return values


def _url_from_keywords(values: dict[str, str]) -> str:
    unknown = sorted(set(values) - _KEYWORD_URL_KEYS - _KEYWORD_QUERY_KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYWORD_URL_KEYS | _KEYWORD_QUERY_KEYS))
        raise ValueError(
            f"libpq keyword {', '.join(unknown)} is not supported (supported: {known}; "
            "timeouts are store.connect_timeout and store.command_timeout); "
            f"or use the URL form {URL_FORM}"
        )
    query = {key: value for key, value in values.items() if key in _KEYWORD_QUERY_KEYS}
    host, port = values.get("host", ""), values.get("port", "")
    if host and "," not in host and not host.startswith("/"):
        address = f"[{host}]" if ":" in host else quote(host, safe="")
        address += f":{port}" if port else ""
    else:
        # Several hosts, or a socket directory: asyncpg reads them from the query.
        address = ""
        query.update({key: value for key, value in (("host", host), ("port", port)) if value})
    database = quote(values.get("dbname", ""), safe="")
    path = f"/{database}" if database else ""
    # Written out: urlunsplit drops the "//" of an empty host, and the result
    # must read as a URL again.
    return (
        f"postgresql://{_user_info(values)}{address}{path}{'?' if query else ''}{urlencode(query)}"
    )


def _user_info(values: dict[str, str]) -> str:
    user = quote(values.get("user", ""), safe="")
    password = quote(values.get("password", ""), safe="")
    if password:
        return f"{user}:{password}@"
    return f"{user}@" if user else ""


def _check_url(dsn: str) -> None:
    """Refuse a URL asyncpg would misread, without quoting any of it."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        raise ValueError(
            f"not a valid URL (a bracketed host must be an IPv6 address): {URL_FORM}"
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"the scheme must be postgresql:// or postgres://: {URL_FORM}")
    if parts.netloc.count("@") > 1:
        raise ValueError(
            "the user name or password holds an unescaped '@', so the host is ambiguous: "
            "percent-escape '@' as %40 (postgresql://user:p%40ss@host:5432/database)"
        )
    if "@" in parts.path or "@" in parts.fragment:
        raise ValueError(
            "an '@' follows the host: percent-escape '/', '?', '#' and '@' in the password "
            "as %2F, %3F, %23 and %40, and '@' in the database name as %40"
        )
    _check_hosts(parts.netloc.rpartition("@")[2])
    _check_query(parts.query)


def _check_hosts(host_spec: str) -> None:
    for host in host_spec.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" in port and not port.rpartition(":")[2].isdigit():
            raise ValueError(
                "a port is not a number: write host:5432; if the password holds '/', '?' "
                "or '#', percent-escape them as %2F, %3F and %23"
            )


def _check_query(query: str) -> None:
    if not query:
        return
    try:
        values = parse_qs(query, strict_parsing=True)
    except ValueError:
        raise ValueError(
            "the query part cannot be read: write it as ?name=value&name=value, "
            "percent-escaping '&', '=' and '#' in values"
        ) from None
    if any(not _PORTS.fullmatch(port) for port in values.get("port", [])):
        raise ValueError("the port query parameter is not a number (or numbers joined by ',')")


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    known = ", ".join(field.alias or name for name, field in PostgresSettings.model_fields.items())
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"store.{key} is not a PostgreSQL store setting (known: {known})")
        elif key:
            problems.append(f"store.{key} (MASA_JOBS_STORE__{key.upper()}): {_reason(error)}")
        else:
            problems.append(_reason(error))
    return ConfigurationError("invalid PostgreSQL store settings: " + "; ".join(problems))


def describe_dsn(dsn: str) -> str:
    """The address in ``dsn`` without its password, for messages and logs."""
    return describe_postgres_dsn(dsn)


def _reason(error: ErrorDetails) -> str:
    # pydantic prefixes the text of a validator's ValueError; the key says enough.
    return error["msg"].removeprefix("Value error, ")
