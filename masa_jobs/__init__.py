"""masa-jobs: typed background jobs on a dependency-injector container.

Everything public is re-exported here; the submodules are implementation.
Two names are imported when first used, as few processes need them: the
in-memory store (a process on another store never loads it, nor
sortedcontainers) and the synchronous facade (a worker never loads it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._redact import redact
from .app import MasaApp
from .context import JobContext, current_job
from .cron import CronSchedule
from .exceptions import (
    ConfigurationError,
    DuplicateJobError,
    DuplicateJobNameError,
    EnqueueError,
    InvalidDelayError,
    InvalidJobArgsError,
    InvalidJobOptionsError,
    InvalidJobStateError,
    InvalidQueryError,
    InvalidScheduleError,
    InvalidTimeoutError,
    JobNotFoundError,
    LeaseLostError,
    MasaAlreadyBuiltError,
    MasaJobsError,
    MasaNotBuiltError,
    NotSupportedError,
    PayloadTooLargeError,
    RegistryError,
    ScheduleNotFoundError,
    SchemaVersionError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
    TransactionError,
    UnknownJobError,
)
from .jobs import (
    BackgroundJob,
    BackgroundJobBase,
    BackgroundScheduleJob,
    get_job_name,
    job_name,
    job_options,
)
from .manager import BackgroundJobManager, DefaultJobManager, JobManager
from .options import BackgroundJobOptions
from .queries import JobQuery, Page
from .records import (
    JobEvent,
    JobId,
    JobInfo,
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleInfo,
    ScheduleRecord,
    UniqueScope,
    WorkerInfo,
)
from .registry import JobRegistry
from .retry import RetryPolicy
from .scheduler import Scheduler
from .stores import JobStore
from .stores.base import CancelFeed, OperatorStore, ScheduleStore, Store, TransactionalStore
from .worker import Worker

if TYPE_CHECKING:
    from .stores.memory import MemoryJobStore
    from .sync import SyncJobManager

__version__ = "0.1.0"

__all__ = [
    "BackgroundJob",
    "BackgroundJobBase",
    "BackgroundJobManager",
    "BackgroundJobOptions",
    "BackgroundScheduleJob",
    "CancelFeed",
    "ConfigurationError",
    "CronSchedule",
    "DefaultJobManager",
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
    "JobContext",
    "JobEvent",
    "JobId",
    "JobInfo",
    "JobManager",
    "JobNotFoundError",
    "JobOutcome",
    "JobQuery",
    "JobRecord",
    "JobRegistry",
    "JobState",
    "JobStore",
    "LeaseLostError",
    "MasaAlreadyBuiltError",
    "MasaApp",
    "MasaJobsError",
    "MasaNotBuiltError",
    "MemoryJobStore",
    "NotSupportedError",
    "OperatorStore",
    "Page",
    "PayloadTooLargeError",
    "RegistryError",
    "RetryPolicy",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "ScheduleRecord",
    "ScheduleStore",
    "Scheduler",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreRejectedError",
    "StoreUnavailableError",
    "SyncJobManager",
    "TransactionError",
    "TransactionalStore",
    "UniqueScope",
    "UnknownJobError",
    "Worker",
    "WorkerInfo",
    "__version__",
    "current_job",
    "get_job_name",
    "job_name",
    "job_options",
    "redact",
]

# Exported names imported on first use (see the module's docstring), by module.
_LAZY = {"MemoryJobStore": ".stores.memory", "SyncJobManager": ".sync"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later uses do not come back here
    return value
