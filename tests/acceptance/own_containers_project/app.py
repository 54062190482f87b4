"""The project's web process: FastAPI, enqueuing through the static facade.

Run with ``uvicorn app:app``; the store and everything else come from
MASA_JOBS_... variables, the same as the worker's.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from jobs import Greet

from containers import container
from masa_jobs import BackgroundJobManager, MasaApp

logging.basicConfig(level=logging.INFO)  # shows which store MasaApp.build chose

MasaApp.build(container)
app = FastAPI(lifespan=lambda app: MasaApp.lifespan())


@app.post("/greet/{name}")
async def greet(name: str) -> dict[str, str]:
    return {"job_id": await BackgroundJobManager.enqueue(Greet(name=name))}
