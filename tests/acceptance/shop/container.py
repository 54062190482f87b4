"""The shop's composition root: the job container plus the shop's own providers."""

from __future__ import annotations

from dependency_injector import containers, providers
from masa_jobs.containers import BackgroundJobContainer

from .recorders import Ledger, Mailer, ReportArchive


class AppContainer(BackgroundJobContainer):
    # MasaApp.build() wires once: these modules plus the modules defining handlers.
    wiring_config = containers.WiringConfiguration(modules=[".services"], auto_wire=False)

    mailer = providers.Singleton(Mailer)
    ledger = providers.Singleton(Ledger)
    archive = providers.Singleton(ReportArchive)
