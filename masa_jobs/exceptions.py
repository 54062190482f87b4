"""Exceptions raised by masa-jobs.

Every error the library raises on purpose derives from one root, and every
message says what went wrong and how to fix it::

    MasaJobsError
    ├── MasaNotBuiltError          a static caller ran before MasaApp.build(...)
    ├── MasaAlreadyBuiltError      MasaApp.build(...) got a second, different container
    ├── ConfigurationError         a setting cannot work (unknown store backend, ...)
    ├── StoreError                 the store failed in a way the caller should see; also
    │   │                          any other error of its driver (the cause)
    │   ├── StoreUnavailableError  the store cannot be reached (names store and address),
    │   │                          or has no room to write (disk or memory full); transient:
    │   │                          the same call may succeed later
    │   ├── StoreRejectedError     the store refused the data itself (a NUL in a text, a
    │   │                          value too large): permanent, retrying it as is cannot help
    │   ├── DuplicateJobError      a job with that id is stored already, or a batch names it
    │   │                          twice; nothing of the batch was stored (also ValueError)
    │   └── SchemaVersionError     the database holds a newer schema than this version knows
    ├── RegistryError              the job classes cannot be mapped to names
    │   └── DuplicateJobNameError  two args types share one job name
    ├── EnqueueError               a job was refused; nothing was stored
    │   ├── InvalidJobArgsError    the args are not a pydantic model instance, or cannot make
    │   │                          the trip through JSON to the worker (also TypeError)
    │   ├── UnknownJobError        no handler is registered for the args type
    │   ├── PayloadTooLargeError   the serialised args exceed max_payload_bytes (also ValueError)
    │   ├── InvalidDelayError      the delay is negative or not a duration (also ValueError)
    │   ├── InvalidTimeoutError    the timeout is not a positive duration (also ValueError)
    │   └── InvalidJobOptionsError a queue, priority, unique key or its scope is wrong
    │                              (also ValueError)
    ├── JobNotFoundError           no job has that id (also LookupError)
    ├── InvalidScheduleError       a recurring job's id, cron or time zone is wrong (ValueError)
    ├── InvalidQueryError          a list query's page size, time range or cursor is wrong
    │                              (also ValueError)
    ├── ScheduleNotFoundError      no recurring job has that id (also LookupError)
    ├── InvalidJobStateError       the operation does not apply to the job's state
    ├── NotSupportedError          the operation is not available in this version or store
    ├── TransactionError           a connection cannot carry jobs in the application's
    │                              transaction: the store cannot share one (memory, Redis),
    │                              or the connection is of another kind or database
    └── LeaseLostError             a handler's completion in its transaction was refused:
                                   the job is no longer this run's; roll the transaction back

A store raises nothing else: its driver's exceptions reach a caller as one of
the ``StoreError`` types above, with the driver's exception as ``__cause__``.
A full disk (SQLite ``database or disk is full``, PostgreSQL ``DiskFullError``)
or a server out of memory is ``StoreUnavailableError``, not
``StoreRejectedError``: the same write succeeds once there is room again, so
the worker retries it with back-off instead of declaring jobs dead whose
outcomes were fine. The message says which it is, and how to make room.

Validation of ``BackgroundJobOptions`` raises pydantic's ``ValidationError``,
which names the field; it is deliberately not wrapped.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DuplicateJobError",
    "DuplicateJobNameError",
    "EnqueueError",
    "InvalidDelayError",
    "InvalidJobArgsError",
    "InvalidJobOptionsError",
    "InvalidJobStateError",
    "InvalidQueryError",
    "InvalidScheduleError",
    "InvalidTimeoutError",
    "JobNotFoundError",
    "LeaseLostError",
    "MasaAlreadyBuiltError",
    "MasaJobsError",
    "MasaNotBuiltError",
    "NotSupportedError",
    "PayloadTooLargeError",
    "RegistryError",
    "ScheduleNotFoundError",
    "SchemaVersionError",
    "StoreError",
    "StoreRejectedError",
    "StoreUnavailableError",
    "TransactionError",
    "UnknownJobError",
]


class MasaJobsError(Exception):
    """Root of every error raised by masa-jobs."""


class MasaNotBuiltError(MasaJobsError):
    """A static caller needed the root container before ``MasaApp.build``."""


class MasaAlreadyBuiltError(MasaJobsError):
    """``MasaApp.build`` was called with a second, different container."""


class ConfigurationError(MasaJobsError):
    """The configuration names something that cannot work."""


class StoreError(MasaJobsError):
    """The store failed in a way the caller should see."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be reached; the message names the store and its address."""


class StoreRejectedError(StoreError, ValueError):
    """The store refused the values of a write; the same write would fail again."""


class DuplicateJobError(StoreError, ValueError):
    """A job with the given id is stored already, or one batch names it twice.

    Job ids are unique; nothing of the batch was stored. ``enqueue`` picks a
    new id every time, so enqueueing the job again never clashes.
    """


class SchemaVersionError(StoreError):
    """The database was set up by a newer masa-jobs; upgrade this one."""


class RegistryError(MasaJobsError):
    """The job classes cannot be mapped to job names."""


class DuplicateJobNameError(RegistryError):
    """Two different args types were given the same job name."""


class EnqueueError(MasaJobsError):
    """A job was refused at enqueue time; nothing was stored."""


class InvalidJobArgsError(EnqueueError, TypeError):
    """The job arguments are not an instance of a pydantic model, or cannot be
    stored as JSON that validates back into the same arguments."""


class UnknownJobError(EnqueueError):
    """No handler is registered for the job's args type."""


class PayloadTooLargeError(EnqueueError, ValueError):
    """The serialised arguments exceed ``max_payload_bytes``."""


class InvalidDelayError(EnqueueError, ValueError):
    """The delay is negative or not a duration."""


class InvalidTimeoutError(EnqueueError, ValueError):
    """A job timeout is not a positive, finite number of seconds or timedelta."""


class InvalidJobOptionsError(EnqueueError, ValueError):
    """A queue name, priority, unique key or unique scope is wrong; nothing was stored."""


class JobNotFoundError(MasaJobsError, LookupError):
    """No job with the given id exists in the store."""


class InvalidScheduleError(MasaJobsError, ValueError):
    """A recurring job's id, cron expression or time zone is invalid; nothing was stored."""


class InvalidQueryError(MasaJobsError, ValueError):
    """A list query cannot be answered: page size, time range or cursor."""


class ScheduleNotFoundError(MasaJobsError, LookupError):
    """No recurring job with the given id exists in the store."""


class InvalidJobStateError(MasaJobsError):
    """The operation does not apply to the job in its current state."""


class NotSupportedError(MasaJobsError):
    """The operation is not available in this version or with this store."""


class TransactionError(MasaJobsError):
    """A connection passed to ``enqueue(..., connection=...)`` or
    ``complete_in(...)`` cannot carry the write in the application's
    transaction: the store keeps its jobs elsewhere (memory, Redis), or the
    connection is of a kind the store does not drive, on another database, or
    has no transaction open. Nothing was written."""


class LeaseLostError(MasaJobsError):
    """``complete_in(...)`` found the job no longer held by this run (its lease
    lapsed and another worker claimed it, or an operator cancelled or moved
    it): nothing was written, and the transaction must roll back."""
