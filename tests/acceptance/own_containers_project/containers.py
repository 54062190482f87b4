"""The project's own containers module, where dependency-injector's docs put it.

Its name is the same as the folder masa-jobs keeps its container in; the
library installs it as ``masa_jobs.containers``, so this module is the only
``containers`` of the project, in every entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

from dependency_injector import providers
from masa_jobs.containers import BackgroundJobContainer


class Greeter:
    """A service the job handler gets injected; it leaves a line per greeting."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def greet(self, name: str) -> None:
        with self.out.open("a", encoding="utf-8") as file:
            file.write(f"hello {name}\n")


class AppContainer(BackgroundJobContainer):
    # Configured only by MASA_JOBS_... variables (store, job_packages ...).
    greeter = providers.Singleton(Greeter, out=os.environ.get("GREETINGS_FILE", "greetings.txt"))


container = AppContainer()
