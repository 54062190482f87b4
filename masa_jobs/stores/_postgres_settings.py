"""Settings of the PostgreSQL store: the ``store`` section for ``backend: postgres``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from ..exceptions import ConfigurationError
from ._postgres_sql import check_schema_name

__all__ = ["PostgresSettings", "describe_dsn"]


class PostgresSettings(BaseModel):
    """The ``store`` section for ``backend: postgres``; durations in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dsn: str = Field(description="postgresql://user:password@host:port/database")
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
                "(postgresql://user:password@host:5432/database)"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _configuration_error(exc) from None


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
    parts = urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2] or "localhost"
    user = f"{parts.username}@" if parts.username else ""
    return f"{user}{hosts}{parts.path}"


def _reason(error: ErrorDetails) -> str:
    # pydantic prefixes the text of a validator's ValueError; the key says enough.
    return error["msg"].removeprefix("Value error, ")
