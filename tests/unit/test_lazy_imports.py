"""A worker imports only what runs: no CLI kit, no web stack, no other store's driver,
no cron parser without a cron expression, no in-memory store on another store.

Each check runs in a fresh interpreter (this test process has imported
everything). What ``dependency_injector`` imports by itself (its wiring
imports FastAPI, and with it Starlette and OpenTelemetry, whenever they are
installed) is the baseline: only what masa-jobs adds on top is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Generous for a loaded CI machine: a passing run takes about a second.
RUN_TIMEOUT_SECONDS = 60.0

# Packages an idle worker on the memory store has no use for.
NOT_FOR_A_WORKER = (
    "asyncpg",
    "fastapi",
    "jinja2",
    "opentelemetry",
    "prometheus_client",
    "redis",
    "rich",
    "starlette",
)
# The CLI's commands other than `worker`, and the library's parts a worker does not run.
OTHER_COMMANDS = (
    "masa_jobs.cli.bench",
    "masa_jobs.cli.dashboard",
    "masa_jobs.cli.demo",
    "masa_jobs.cli.health",
    "masa_jobs.cli.ops",
    "masa_jobs.cli.ops_fleet",
    "masa_jobs.cli.ops_queues",
    "masa_jobs.dashboard",
    "masa_jobs.metrics",
)

# What a worker imports only when its application uses it: croniter (and
# dateutil) for cron expressions, the in-memory store (and sortedcontainers)
# for that store, the synchronous facade for SyncJobManager.
ONLY_WHEN_USED = ("croniter", "dateutil", "sortedcontainers")
ONLY_WHEN_USED_MODULES = ("masa_jobs.stores.memory", "masa_jobs.sync")

# Prints, as JSON, the modules imported after dependency_injector's own.
_PRELUDE = """\
import json, sys
import dependency_injector.containers
BEFORE = set(sys.modules)

def added():
    return sorted(set(sys.modules) - BEFORE)
"""

_APP = """\
from masa_jobs import BackgroundScheduleJob
from masa_jobs.containers import BackgroundJobContainer


class Hourly(BackgroundScheduleJob):
    id = "lazy.hourly"
    cron_expression = "0 * * * *"

    async def execute(self) -> None:
        return None


container = BackgroundJobContainer()
"""

# A worker run by the library, with the container config given as JSON in argv[1].
_LIBRARY_WORKER = """\
import anyio
from masa_jobs import MasaApp
from masa_jobs.containers import BackgroundJobContainer

container = BackgroundJobContainer()
container.config.from_dict(json.loads(sys.argv[1]))
MasaApp.build(container)


async def main():
    async with MasaApp.lifespan():
        await anyio.sleep(0.1)


anyio.run(main)
print(json.dumps(added()))
"""
# Observers off: the worker's own imports, not prometheus-client's or OpenTelemetry's.
_NO_OBSERVERS = {"metrics": False, "tracing": False}

_IMPORT_ONLY = """\
import masa_jobs
print(json.dumps(added()))
"""

# Reports the modules once the worker says it started, then stops it as a supervisor would.
_CLI_WORKER = """\
import logging, os, signal


class OnStart(logging.Handler):
    def emit(self, record):
        if "started:" in record.getMessage():
            print(json.dumps(added()), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)


logging.getLogger("masa_jobs.cli").addHandler(OnStart())
sys.argv = ["masa-jobs", "worker", "lazy_app:container", "--app-dir", sys.argv[1]]
from masa_jobs.cli import main

main()
"""


def _imported(script: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PRELUDE + script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_SECONDS,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules


def _unwanted(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in packages or m in OTHER_COMMANDS]


def test_a_worker_run_by_the_library_imports_no_cli_or_web_stack() -> None:
    modules = _imported(_LIBRARY_WORKER, json.dumps({"options": _NO_OBSERVERS}))

    assert "masa_jobs.worker" in modules
    assert not _unwanted(modules, (*NOT_FOR_A_WORKER, "typer", "masa_jobs.cli")), modules
    assert not [m for m in modules if m.startswith("masa_jobs.cli")]
    assert "masa_jobs.sync" not in modules


def test_importing_the_package_imports_neither_the_memory_store_nor_the_sync_facade() -> None:
    modules = _imported(_IMPORT_ONLY)

    assert "masa_jobs.worker" in modules
    assert not _unwanted(modules, ONLY_WHEN_USED), modules
    assert not set(modules) & set(ONLY_WHEN_USED_MODULES), modules


def test_a_worker_without_cron_or_memory_store_imports_neither(tmp_path: Path) -> None:
    # A worker on SQLite whose application declares no recurring job.
    store = {"backend": "sqlite", "path": str(tmp_path / "jobs.sqlite3")}
    modules = _imported(_LIBRARY_WORKER, json.dumps({"store": store, "options": _NO_OBSERVERS}))

    assert "masa_jobs.stores.sqlite" in modules
    assert not _unwanted(modules, ONLY_WHEN_USED), modules
    assert not set(modules) & set(ONLY_WHEN_USED_MODULES), modules


def test_the_worker_command_imports_only_its_own_command(tmp_path: Path) -> None:
    (tmp_path / "lazy_app.py").write_text(textwrap.dedent(_APP))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MASA_JOBS_")},
        "MASA_JOBS_OPTIONS__METRICS": "false",
        "MASA_JOBS_OPTIONS__TRACING": "false",
    }

    modules = _imported(_CLI_WORKER, str(tmp_path), env=env)

    assert "masa_jobs.cli.worker" in modules
    assert not _unwanted(modules, NOT_FOR_A_WORKER), modules
    assert "masa_jobs.sync" not in modules
