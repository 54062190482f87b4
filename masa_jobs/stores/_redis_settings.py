"""Settings of the Redis store: the ``store`` section for ``backend: redis``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class RedisStoreSettings(BaseModel):
    """The ``store`` section for ``backend: redis``; durations in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="redis://[:password@]host:port/db, rediss://... or unix://...")
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
    def _known_scheme(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"the scheme must be one of {', '.join(_SCHEMES)}")
        _ = parts.port  # raises ValueError for a port that is not a number
        return url

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RedisStoreSettings:
        """Validate the ``store`` section (``backend`` ignored); problems are a
        ``ConfigurationError`` naming the key and its environment variable."""
        given = {k: v for k, v in values.items() if k != "backend" and v is not None}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            raise ConfigurationError(_problems(exc)) from None


def redacted(url: str) -> str:
    """The address without the password, for messages and logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or _DEFAULT_PORT}{parts.path}"


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
