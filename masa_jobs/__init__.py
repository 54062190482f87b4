"""masa-jobs: typed background jobs on a dependency-injector container.

Everything public is re-exported here; the submodules are implementation.
"""

from __future__ import annotations

from .app import MasaApp
from .exceptions import (
    ConfigurationError,
    DuplicateJobNameError,
    EnqueueError,
    InvalidDelayError,
    InvalidJobArgsError,
    InvalidJobStateError,
    JobNotFoundError,
    MasaAlreadyBuiltError,
    MasaJobsError,
    MasaNotBuiltError,
    NotSupportedError,
    PayloadTooLargeError,
    RegistryError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
    UnknownJobError,
)
from .jobs import (
    BackgroundJob,
    BackgroundJobBase,
    BackgroundScheduleJob,
    get_job_name,
    job_name,
)
from .manager import BackgroundJobManager, DefaultJobManager, JobManager
from .options import BackgroundJobOptions
from .records import JobInfo, JobOutcome, JobRecord, JobState, WorkerInfo
from .registry import JobRegistry
from .retry import RetryPolicy
from .stores import JobStore, MemoryJobStore
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "BackgroundJob",
    "BackgroundJobBase",
    "BackgroundJobManager",
    "BackgroundJobOptions",
    "BackgroundScheduleJob",
    "ConfigurationError",
    "DefaultJobManager",
    "DuplicateJobNameError",
    "EnqueueError",
    "InvalidDelayError",
    "InvalidJobArgsError",
    "InvalidJobStateError",
    "JobInfo",
    "JobManager",
    "JobNotFoundError",
    "JobOutcome",
    "JobRecord",
    "JobRegistry",
    "JobState",
    "JobStore",
    "MasaAlreadyBuiltError",
    "MasaApp",
    "MasaJobsError",
    "MasaNotBuiltError",
    "MemoryJobStore",
    "NotSupportedError",
    "PayloadTooLargeError",
    "RegistryError",
    "RetryPolicy",
    "SchemaVersionError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownJobError",
    "Worker",
    "WorkerInfo",
    "__version__",
    "get_job_name",
    "job_name",
]
