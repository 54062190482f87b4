"""The project's job: its handler uses a service injected from the project's container."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject
from pydantic import BaseModel

from containers import AppContainer, Greeter
from masa_jobs import BackgroundJob, job_name


@job_name("project.greet")
class Greet(BaseModel):
    name: str


class GreetJob(BackgroundJob[Greet]):
    @inject
    def __init__(self, greeter: Greeter = Provide[AppContainer.greeter]) -> None:
        self.greeter = greeter

    async def execute(self, args: Greet) -> None:
        self.greeter.greet(args.name)
