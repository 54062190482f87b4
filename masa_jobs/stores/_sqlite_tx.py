"""The application's connection, as the SQLite store writes on it in the
application's transaction (``add_in``, ``finish_in``).

What the application passes becomes the ``sqlite3.Connection`` under it: a
``sqlite3.Connection`` itself, or a SQLAlchemy (sync) ``Connection`` or
``Session`` on the pysqlite driver. SQLAlchemy is imported only when the
object comes from it, so the store needs it only for applications that use it.

The store writes on that connection in the calling thread: a ``sqlite3``
connection belongs to the thread that opened it (unless opened with
``check_same_thread=False``), and a write in the application's transaction
cannot move to a thread of the store's anyway.

sqlite3's default ("legacy") transaction mode opens a transaction implicitly,
with ``BEGIN``, before the first INSERT, UPDATE or DELETE, so that a
connection with none open yet is one about to open one: accepted. A
connection that autocommits each statement (``isolation_level=None``, or
``autocommit=True`` on Python 3.12+, with no transaction open) would store
the jobs at once, whatever becomes of the application's work: refused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..exceptions import TransactionError

__all__ = ["ACCEPTED_CONNECTIONS", "begin_if_idle", "joined_connection"]

ACCEPTED_CONNECTIONS = (
    "a sqlite3.Connection, or a SQLAlchemy Connection or Session on the pysqlite "
    "driver (sqlite:///path), on the store's file"
)
# The SQLAlchemy dialect whose connections are sqlite3 connections.
_SQLALCHEMY_DIALECT = ("sqlite", "pysqlite")


def joined_connection(connection: object, path: Path) -> sqlite3.Connection:
    """The ``sqlite3.Connection`` under ``connection``, checked to be on the
    file at ``path`` and in (or about to open) a transaction;
    ``TransactionError`` before anything is written otherwise."""
    driver = _sqlite3_connection(connection)
    try:
        _check_file(driver, path)
        _check_transaction(driver)
    except sqlite3.ProgrammingError as exc:
        # Closed, or opened in another thread with check_same_thread left on.
        raise TransactionError(
            f"the sqlite3 connection passed cannot be used here ({exc}): pass an open "
            "connection of the calling thread, inside the transaction that should "
            "carry the write"
        ) from exc
    return driver


def begin_if_idle(connection: sqlite3.Connection) -> None:
    """Open the transaction of a legacy-mode connection that has none yet,
    exactly as sqlite3 would at the store's first INSERT (``BEGIN`` with the
    connection's isolation level); the application commits or rolls it back
    as if it had written first.

    Done before the store's savepoint rather than left to that INSERT: a
    savepoint outside a transaction would open one of its own, whose release
    commits it, before the application decides.
    """
    if not connection.in_transaction:
        # Not None: _check_transaction refused such a connection.
        level = connection.isolation_level or ""
        connection.execute(f"BEGIN {level}")


def _sqlite3_connection(connection: object) -> sqlite3.Connection:
    if isinstance(connection, sqlite3.Connection):
        return connection
    if type(connection).__module__.startswith("sqlalchemy"):
        return _from_sqlalchemy(connection)
    raise _unsupported(connection)


def _unsupported(connection: object) -> TransactionError:
    kind = f"{type(connection).__module__}.{type(connection).__qualname__}"
    return TransactionError(
        f"the SQLite store cannot write in the transaction of a {kind}: pass "
        f"{ACCEPTED_CONNECTIONS}, in an open transaction"
    )


def _from_sqlalchemy(connection: object) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy Connection or Session, whose
    transaction is begun (see ``_begun``)."""
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session, scoped_session

    try:
        if isinstance(connection, scoped_session):
            connection = connection()
        if isinstance(connection, Session):
            _check_dialect(connection.get_bind().dialect, "Session")
            # Begins the session's transaction, as its first statement would.
            connection = connection.connection()
        if not isinstance(connection, Connection):
            raise _unsupported(connection)
        _check_dialect(connection.dialect, "Connection")
        driver = _begun(connection).connection.driver_connection
    except SQLAlchemyError as exc:
        raise TransactionError(
            f"the SQLAlchemy {type(connection).__name__} passed cannot give its "
            f"connection ({exc}): pass one that is open, inside its transaction"
        ) from exc
    if not isinstance(driver, sqlite3.Connection):
        raise _unsupported(driver)
    return driver


def _begun(connection: Any) -> Any:
    """A SQLAlchemy Connection with its transaction begun.

    A Connection begins its transaction at its first statement ("autobegin"),
    which the store's statements bypass, since they run on the sqlite3
    connection under it; begun here, the application's ``commit()`` or
    ``rollback()`` ends what the store wrote, as it would a statement of its
    own. On pysqlite, beginning sends nothing to the database: the driver
    opens the transaction itself at the first write (``begin_if_idle``).
    """
    if not connection.in_transaction():
        connection.begin()
    return connection


def _check_dialect(dialect: Any, kind: str) -> None:
    used = (dialect.name, dialect.driver)
    if used != _SQLALCHEMY_DIALECT:
        raise TransactionError(
            f"the SQLAlchemy {kind} passed uses the {used[0]}+{used[1]} dialect; the SQLite "
            f"store writes through {ACCEPTED_CONNECTIONS} (an engine made with "
            "create_engine('sqlite:///path'))"
        )


def _check_file(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse a connection whose main database is not the store's file."""
    rows = connection.execute("PRAGMA database_list").fetchall()
    main = next((str(file) for _, name, file in rows if name == "main"), "")
    if main and Path(main).resolve() == path.resolve():
        return
    where = repr(main) if main else "an in-memory or temporary database"
    raise TransactionError(
        f"the connection passed is on {where}, not on the SQLite store's file "
        f"{str(path)!r}: the jobs must be written in a transaction on that file; open "
        "the application's connection on it (store.path), or enqueue after the commit "
        "without connection="
    )


def _check_transaction(connection: sqlite3.Connection) -> None:
    """Refuse a connection that would commit each of the store's statements
    at once (see the module docstring)."""
    # ``autocommit`` exists from Python 3.12 on (its legacy value is neither
    # True nor False); True, like isolation_level None, leaves transactions to
    # explicit BEGIN and COMMIT: fine once the application has sent BEGIN.
    manual = getattr(connection, "autocommit", None) is True or connection.isolation_level is None
    if manual and not connection.in_transaction:
        raise TransactionError(
            "the sqlite3 connection passed autocommits each statement (isolation_level=None "
            "or autocommit=True) and has no transaction open, so the jobs would be stored "
            "whatever became of the application's work: open a transaction first "
            "(connection.execute('BEGIN')), or use a connection in the default transaction "
            "mode, which opens one at its first write"
        )
