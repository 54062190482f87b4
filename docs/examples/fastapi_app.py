"""A FastAPI app that enqueues jobs two ways; one worker runs them all.

Run it with ``uvicorn fastapi_app:create_app --factory``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJobBase, BackgroundJobManager, JobManager, MasaApp, job_name

WELCOME_DELAY = timedelta(seconds=0.3)  # MASA's FAQ uses 3 s; kept short here


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append(f"{to}: {subject}")


class Container(BackgroundJobContainer):
    wiring_config = containers.WiringConfiguration(modules=[__name__], auto_wire=False)

    mailer = providers.Singleton(Mailer)


@job_name("users.register")
class RegisterUser(BaseModel):
    name: str


class RegisterUserJob(BackgroundJobBase[RegisterUser]):
    @inject
    def __init__(self, mailer: Mailer = Provide[Container.mailer]) -> None:
        self.mailer = mailer

    async def executing(self, args: RegisterUser) -> None:
        await self.mailer.send(args.name, "welcome")


class NewUser(BaseModel):
    name: str


router = APIRouter()
# The root container's job manager, injected by dependency-injector into FastAPI routes.
InjectedJobManager = Annotated[JobManager, Depends(Provide[Container.job_manager])]


# Way 1: the manager injected from the container (MASA: IBackgroundJobManager in a controller).
@router.post("/users")
@inject
async def add_user(body: NewUser, manager: InjectedJobManager) -> dict[str, str]:
    job_id = await manager.enqueue(RegisterUser(name=body.name), delay=WELCOME_DELAY)
    return {"job_id": job_id}


# Way 2: the static facade, from code that has no container at hand (MASA: a service).
class UserService:
    async def add(self, name: str) -> str:
        return await BackgroundJobManager.enqueue(RegisterUser(name=name), delay=WELCOME_DELAY)


@router.post("/users/via-service")
async def add_user_via_service(body: NewUser) -> dict[str, str]:
    return {"job_id": await UserService().add(body.name)}


@router.get("/jobs/{job_id}")
@inject
async def get_job(job_id: str, manager: InjectedJobManager) -> dict[str, Any]:
    info = await manager.get(job_id)
    if info is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    return {"id": info.id, "state": info.state.value, "attempts": info.attempts}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with MasaApp.lifespan():  # opens the store; the worker runs beside the app
        yield


def create_app(config: dict[str, Any] | None = None) -> FastAPI:
    container = Container()
    if config is not None:
        container.config.from_dict(config)  # set in code: wins over MASA_JOBS_... variables
    MasaApp.build(container)  # reads MASA_JOBS_...; MASA: MasaApp.Build(app.Services)
    app = FastAPI(lifespan=lifespan)
    app.state.container = container
    app.include_router(router)
    return app
