"""Settings of the Redis store: the ``store`` section for ``backend: redis``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .._redact import describe_redis_url
from ..exceptions import ConfigurationError

__all__ = ["ENV_PREFIX", "RedisStoreSettings", "redacted"]

# Where each setting comes from in the environment: MASA_JOBS_STORE__URL, ...
ENV_PREFIX = "MASA_JOBS_STORE__"
DEFAULT_PREFIX = "masa_jobs"
# Long enough for a server across a slow network, short enough that a wrong
# address fails start-up promptly.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
# A command with no answer by then is stuck on a half-open connection: fail it.
DEFAULT_COMMAND_TIMEOUT_SECONDS = 10.0
_SCHEMES = ("redis", "rediss", "unix")
_DEFAULT_PORT = 6379
# The database part of a redis:// URL: none, "/" or "/<number>". redis-py
# reads anything else as database 0 without a word.
_DATABASE_PATH = re.compile(r"/?(\d+)?")
# Query parameters redis-py converts to numbers; a bad one fails only at open.
_NUMERIC_QUERY = ("db", "socket_timeout", "socket_connect_timeout", "max_connections", "protocol")
_URL_FORM = "redis://[[user]:password@]host:6379/0"


class RedisStoreSettings(BaseModel):
    """The ``store`` section for ``backend: redis``; durations in seconds."""

    # The URL holds a password: keep it out of repr() and validation errors.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(
        repr=False, description="redis://[:password@]host:port/db, rediss://... or unix://..."
    )
    prefix: str = Field(
        default=DEFAULT_PREFIX,
        min_length=1,
        # Braces would break the hash tag that keeps a store's keys in one slot.
        pattern=r"^[^{}]+$",
        description="Every key of the store starts with {prefix}:",
    )
    connect_timeout: float = Field(
        default=DEFAULT_CONNECT_TIMEOUT_SECONDS, gt=0, description="Seconds to connect."
    )
    command_timeout: float = Field(
        default=DEFAULT_COMMAND_TIMEOUT_SECONDS,
        gt=0,
        description="Seconds a command may wait for its answer before it fails.",
    )

    @field_validator("url")
    @classmethod
    def _url_redis_reads_as_meant(cls, url: str) -> str:
        check_url(url)
        return url

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RedisStoreSettings:
        """Validate the ``store`` section (``backend`` ignored); problems are a
        ``ConfigurationError`` naming the key and its environment variable."""
        given = {k: v for k, v in values.items() if k != "backend" and v is not None}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            problems = _problems(exc)
        # Raised here, not in the except block: the ValidationError, which
        # would hang on as __context__, holds the URL.
        raise ConfigurationError(problems)


def check_url(url: str) -> None:
    """Refuse a URL redis-py would misread or refuse at open; messages never quote it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(
            "the port is not a number, or a bracketed host is no IPv6 address: write "
            f"{_URL_FORM}; if the password holds '/', '?' or '#', percent-escape them "
            "as %2F, %3F and %23"
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(_SCHEMES)}")
    if port == 0:
        raise ValueError(f"the port must be 1 to 65535: {_URL_FORM}")
    if parts.scheme != "unix" and not _DATABASE_PATH.fullmatch(parts.path):
        raise ValueError(
            f"the database part after the host is not a number: write {_URL_FORM} "
            "(databases are numbered 0 to 15 by default)"
        )
    _check_query(parts.query)


def _check_query(query: str) -> None:
    values = parse_qs(query)
    for name in _NUMERIC_QUERY:
        number = float if name.endswith("timeout") else int
        for value in values.get(name, []):
            try:
                number(value)
            except ValueError:
                raise ValueError(f"the query parameter {name} is not a number") from None


def redacted(url: str) -> str:
    """The address without the password, for messages and logs."""
    return describe_redis_url(url, _DEFAULT_PORT)


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "store"
        env = f"{ENV_PREFIX}{key.upper()}"
        if error["type"] == "missing":
            problems.append(f"store.{key} is not set: set it in the store config or {env}")
        elif error["type"] == "extra_forbidden":
            known = ", ".join(RedisStoreSettings.model_fields)
            problems.append(f"store.{key} is not a setting of the redis store (known: {known})")
        else:
            problems.append(f"store.{key} is invalid ({error['msg']}): fix it or {env}")
    return "; ".join(problems)
