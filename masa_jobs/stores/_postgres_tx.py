"""The application's connection, as the PostgreSQL store writes on it inside
the application's transaction (``add_in``, ``finish_in``).

The store's statements are asyncpg's (``$n`` placeholders, asyncpg's
encoding of arrays and timestamps), so what the application passes is turned
into the asyncpg connection under it: an ``asyncpg.Connection`` or a pool's
connection proxy as it is, a SQLAlchemy ``AsyncConnection`` or
``AsyncSession`` on the asyncpg driver through its driver connection.
Nothing of SQLAlchemy is imported unless the object comes from it.

The transaction must be open: a write outside one would commit at once,
whatever the application does next. Anything else is refused with
``TransactionError`` before a statement is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg

from .._redact import redact
from ..exceptions import TransactionError
from ._errors import cut

__all__ = ["TRANSACTION_CONNECTIONS", "in_transaction", "savepoint"]

# What add_in and finish_in accept, as messages and the docs name it.
TRANSACTION_CONNECTIONS = (
    "an asyncpg connection (a pool's connection too), or a SQLAlchemy AsyncConnection "
    "or AsyncSession on the asyncpg driver (postgresql+asyncpg://), on the store's database"
)
# The savepoint an add with unique keys runs under (see ``savepoint``).
_SAVEPOINT = "masa_jobs_add"
_NO_TRANSACTION = (
    "the connection has no transaction open, so the write would commit at once: open a "
    "transaction first (asyncpg: `async with connection.transaction(): ...`; SQLAlchemy: "
    "`async with engine.begin() as connection: ...` or `async with session.begin(): ...`)"
)


async def in_transaction(connection: object) -> Any:
    """The ``asyncpg.Connection`` under ``connection``, whose transaction is
    open; ``TransactionError`` for anything else (asyncpg is untyped: Any)."""
    if isinstance(connection, asyncpg.Connection):  # a pool's proxy passes too
        driver: Any = connection
    elif type(connection).__module__.startswith("sqlalchemy"):
        driver = await _sqlalchemy_driver(connection)
    else:
        kind = f"{type(connection).__module__}.{type(connection).__qualname__}"
        raise TransactionError(
            f"the PostgreSQL store cannot write in a transaction of a {kind}: pass "
            f"{TRANSACTION_CONNECTIONS}"
        )
    if driver.is_closed():
        raise TransactionError("the connection is closed: pass an open one, inside its transaction")
    if not driver.is_in_transaction():
        raise TransactionError(_NO_TRANSACTION)
    return driver


async def _sqlalchemy_driver(connection: object) -> Any:
    """The asyncpg connection of a SQLAlchemy ``AsyncConnection`` or
    ``AsyncSession``, with its transaction begun on the server.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement
    (``engine.begin()`` only marks the transaction begun), and a connection in
    "commit as you go" style begins one at its first statement, which lasts
    until ``commit()``. Either way, a trivial statement through SQLAlchemy
    itself makes it send that BEGIN, so that SQLAlchemy knows the
    transaction and ends it: one BEGIN of our own on the driver would be
    invisible to SQLAlchemy, and its commit would commit nothing. Only a
    connection in AUTOCOMMIT isolation is left without a transaction, and
    refused by the caller.
    """
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if not isinstance(connection, AsyncConnection | AsyncSession):
        raise TransactionError(
            f"the PostgreSQL store cannot write through a SQLAlchemy "
            f"{type(connection).__qualname__}: pass {TRANSACTION_CONNECTIONS}"
        )
    try:
        if isinstance(connection, AsyncSession):
            connection = await connection.connection()  # begins the session's transaction
        if connection.dialect.driver != "asyncpg":
            raise TransactionError(
                f"the SQLAlchemy connection runs on the {connection.dialect.driver!r} driver, "
                "but the PostgreSQL store writes through asyncpg: create the engine with "
                "a postgresql+asyncpg:// URL"
            )
        driver = (await connection.get_raw_connection()).driver_connection
        if driver is None:  # invalidated by an earlier failure
            raise TransactionError(
                "the SQLAlchemy connection was invalidated by an earlier failure: roll its "
                "transaction back and use a new one"
            )
        if not driver.is_in_transaction():
            await connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        # The application's session failed before anything was written: it
        # cannot connect, or must roll back an earlier failure first.
        raise TransactionError(
            f"SQLAlchemy could not give the connection inside a transaction "
            f"({type(exc).__name__}: {cut(redact(str(exc)))}); nothing was written"
        ) from exc
    return driver


@asynccontextmanager
async def savepoint(driver: Any) -> AsyncIterator[None]:
    """Run the block under a savepoint of the application's transaction: on
    an error what the block wrote is taken back, and the transaction can
    carry on (or roll back) as the application decides.

    SQL, not ``driver.transaction()``: asyncpg refuses a nested transaction
    block in a transaction begun by hand (``execute("BEGIN")``), and the
    application's transaction may be one.
    """
    await driver.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield
    except BaseException:
        # A connection that failed has lost the transaction, savepoint and
        # all: the block's own error is the one to report.
        with suppress(Exception):
            await driver.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        raise
    await driver.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
