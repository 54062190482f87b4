"""The SQLite store's settings, and opening its file: checks, pragmas, schema.

``connect`` runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import (
    ConfigurationError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
)
from ._sqlite_schema import MIGRATIONS, SCHEMA_VERSION, Statements, check_table_prefix

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "DEFAULT_TABLE_PREFIX",
    "SYNCHRONOUS_MODES",
    "SqliteSettings",
    "connect",
    "read_transaction",
    "savepoint",
    "write_transaction",
]

logger = logging.getLogger("masa_jobs.stores.sqlite")

DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
DEFAULT_TABLE_PREFIX = "masa_"
SYNCHRONOUS_MODES = ("normal", "full")
_NO_PATH = (
    "the sqlite store needs a database file: set store.path (MASA_JOBS_STORE__PATH), "
    "e.g. /var/lib/myapp/jobs.sqlite3"
)


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    """Where the database is and how to use it; invalid values raise ``ConfigurationError``.

    ``busy_timeout``: seconds to wait for a lock another process holds.
    ``synchronous``: ``normal`` or ``full`` (see the ``sqlite`` module).
    ``table_prefix``: starts every table name, so that applications can share a file.
    """

    path: Path
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS
    synchronous: str = SYNCHRONOUS_MODES[0]
    table_prefix: str = DEFAULT_TABLE_PREFIX

    def __post_init__(self) -> None:
        if not (self.busy_timeout >= 0 and math.isfinite(self.busy_timeout)):
            raise ConfigurationError(
                f"store.busy_timeout must be a number of seconds >= 0, not {self.busy_timeout!r}"
            )
        if self.synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"store.synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"not {self.synchronous!r}"
            )
        try:
            check_table_prefix(self.table_prefix)
        except ValueError as exc:
            raise ConfigurationError(f"store.table_prefix: {exc}") from None

    @classmethod
    def of(cls, path: str | os.PathLike[str] | None, **options: Any) -> SqliteSettings:
        if path is None or not str(path):
            raise ConfigurationError(_NO_PATH)
        return cls(Path(path).expanduser(), **options)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> SqliteSettings:
        """From the ``store`` configuration section, whose values may be strings."""
        names = ("path", *(name for name in cls.__dataclass_fields__ if name != "path"))
        unknown = sorted(set(settings) - {"backend", *names})
        if unknown:
            raise ConfigurationError(
                f"unknown SQLite store setting(s) {', '.join(unknown)}: "
                f"the sqlite backend takes {', '.join(names)}"
            )
        options: dict[str, Any] = {}
        if settings.get("busy_timeout") is not None:
            options["busy_timeout"] = _seconds("busy_timeout", settings["busy_timeout"])
        if settings.get("synchronous") is not None:
            options["synchronous"] = str(settings["synchronous"]).lower()
        if settings.get("table_prefix") is not None:
            options["table_prefix"] = str(settings["table_prefix"])
        return cls.of(settings.get("path"), **options)


def _seconds(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"store.{name} must be a number of seconds, not {value!r}"
        ) from None


def connect(settings: SqliteSettings, sql: Statements) -> sqlite3.Connection:
    """A connection in WAL mode to the settings' file, its tables at ``SCHEMA_VERSION``.

    Raises ``StoreUnavailableError`` naming the path when the file cannot be
    opened or is not a database, ``SchemaVersionError`` when a newer
    masa-jobs set it up, ``StoreError`` when Python's SQLite lacks the JSON
    functions.
    """
    path = settings.path
    where = f"SQLite store at {str(path)!r}"
    folder = path.parent
    if not folder.is_dir():
        raise StoreUnavailableError(
            f"cannot open the {where}: the directory {str(folder)!r} does not exist; "
            "create it or point store.path (MASA_JOBS_STORE__PATH) elsewhere"
        )
    try:
        # Autocommit mode (isolation_level=None): transactions are explicit.
        # ``timeout`` is SQLite's busy timeout: how long to wait for a lock
        # another process holds. ``check_same_thread=False``: the store hands
        # the connection from one worker thread to the next, never to two at once.
        connection = sqlite3.connect(
            path, timeout=settings.busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"cannot open the {where}: {exc}") from exc
    try:
        _configure(connection, path, settings)
        _check_json(connection, path)
        _migrate(connection, path, sql)
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise StoreUnavailableError(
            f"cannot use the {where}: {exc} (is it a SQLite database that this process "
            "can read and write?)"
        ) from exc
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A transaction that takes the write lock at its start (``BEGIN IMMEDIATE``).

    Taking the lock first means that what the transaction reads cannot change
    before it writes: no other process can claim the same job in between.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A transaction that only reads: its statements see one snapshot of the
    file (WAL mode: it blocks no writer, and no writer changes what it reads)."""
    connection.execute("BEGIN DEFERRED")
    try:
        yield connection
    finally:
        if connection.in_transaction:
            connection.execute("COMMIT")


# The savepoint around the store's writes in the application's transaction.
_SAVEPOINT = "masa_jobs_write"


@contextmanager
def savepoint(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A savepoint inside a transaction that the caller opened and owns: a
    failure undoes only what the block wrote, and the transaction stays
    usable. Outside a transaction a savepoint would start one and its release
    commit it: the caller must have one open (see ``_sqlite_tx.begin_if_idle``).
    """
    connection.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield connection
    except BaseException:
        # A full disk or an I/O error can make SQLite roll the whole
        # transaction back, the savepoint with it: there is nothing left to
        # undo, and the error that did it is the one to raise.
        if connection.in_transaction:
            with suppress(sqlite3.OperationalError):
                connection.execute(f"ROLLBACK TO {_SAVEPOINT}")
                connection.execute(f"RELEASE {_SAVEPOINT}")
        raise
    connection.execute(f"RELEASE {_SAVEPOINT}")


# What the -wal file is cut back to after a checkpoint: enough for a burst of
# claims and outcomes to reuse without growing the file again.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024


def checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the log into the database and truncate it (skipped while readers use it)."""
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


def _configure(connection: sqlite3.Connection, path: Path, settings: SqliteSettings) -> None:
    mode = _enter_wal(connection, settings.busy_timeout)
    if str(mode).lower() != "wal":
        logger.warning(
            "SQLite store at %s runs in %s journal mode, not WAL (is it on a network "
            "file system?): readers will block the writer",
            path,
            mode,
        )
    connection.execute(f"PRAGMA synchronous = {settings.synchronous.upper()}")
    # A checkpoint that resets the log truncates the -wal file to this size, so
    # a busy hour does not leave a log many times the database's size on disk.
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")


# The first and the longest pause between two tries to switch a new file to
# WAL: short, since the process in the way holds its lock for a few writes.
_WAL_RETRY_FIRST_PAUSE_SECONDS = 0.001
_WAL_RETRY_LONGEST_PAUSE_SECONDS = 0.05


def _enter_wal(connection: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch the file to WAL and return the journal mode it is in.

    Switching a file that is still in rollback mode reads its header, then
    writes it; SQLite answers "database is locked" at once, without waiting
    out the busy timeout, when another process holds the write lock in
    between (several processes opening a new file together). So the switch
    is tried again until the busy timeout has passed, as SQLite would wait.
    """
    deadline = time.monotonic() + busy_timeout
    pause = _WAL_RETRY_FIRST_PAUSE_SECONDS
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, _WAL_RETRY_LONGEST_PAUSE_SECONDS)


# What the store needs of SQLite's JSON functions (job histories): json_insert
# with '$[#]' is SQLite 3.31 (2020), with JSON built in (as in Python's builds).
_JSON_PROBE = "SELECT json_insert('[]', '$[#]', json_object('at', 1))"


def _check_json(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse, once and clearly, an SQLite library without the JSON functions:
    else every outcome would fail as if the file were unavailable."""
    try:
        connection.execute(_JSON_PROBE).fetchone()
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"the SQLite store at {str(path)!r} needs SQLite's JSON functions ({exc}), and "
            f"this Python's sqlite3 module has SQLite {sqlite3.sqlite_version} without them: "
            "use a Python whose SQLite is 3.31 or later with JSON (its own builds since "
            "2020 are)"
        ) from exc


def _migrate(connection: sqlite3.Connection, path: Path, sql: Statements) -> None:
    """Create or upgrade the tables; refuse a schema newer than this code."""
    if _schema_version(connection, path, sql) == SCHEMA_VERSION:
        return
    with write_transaction(connection):
        # Read again under the write lock: another process may have done it.
        version = _schema_version(connection, path, sql)
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            connection.execute(sql.create_version_table)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                connection.execute(statement.format(p=sql.prefix))
        connection.execute(sql.write_version, (SCHEMA_VERSION,))
    logger.info("SQLite store at %s: schema version %d -> %d", path, version, SCHEMA_VERSION)


def _schema_version(connection: sqlite3.Connection, path: Path, sql: Statements) -> int:
    """The schema version in the file: 0 when it has no tables of ours yet."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (sql.version_table,)
    ).fetchone()
    row = connection.execute(sql.read_version).fetchone() if exists else None
    version = 0 if row is None else int(row[0])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the SQLite store at {str(path)!r} has schema version {version} "
            f"(table {sql.version_table}), set up by a newer masa-jobs; this one knows "
            f"versions up to {SCHEMA_VERSION}: upgrade masa-jobs"
        )
    return version
