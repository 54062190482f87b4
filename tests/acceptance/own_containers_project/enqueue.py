"""A plain script that enqueues one greeting per argument and prints the job ids."""

from __future__ import annotations

import sys

import anyio
from jobs import Greet

from containers import container
from masa_jobs import BackgroundJobManager, MasaApp


async def main(names: list[str]) -> None:
    async with MasaApp.lifespan():
        for name in names:
            print(await BackgroundJobManager.enqueue(Greet(name=name)))


if __name__ == "__main__":
    MasaApp.build(container)
    anyio.run(main, sys.argv[1:])
