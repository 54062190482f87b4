"""The shop's jobs: two handlers for a placed order, one slow report export.

Failures are injected through the args, as a real job would see a flaky
dependency: ``mail_failures`` makes the confirmation mail fail that many
times before it succeeds (``ALWAYS`` never succeeds).
"""

from __future__ import annotations

import anyio
from dependency_injector.wiring import Provide, inject
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobBase, job_name

from .container import AppContainer
from .recorders import Ledger, Mailer, ReportArchive

ALWAYS = -1


class MailServerDown(ConnectionError):
    """The mail server refused the message."""


@job_name("shop.order-placed")
class OrderPlaced(BaseModel):
    order_id: int
    email: str
    amount_cents: int = 1000
    mail_failures: int = 0


class SendOrderConfirmation(BackgroundJobBase[OrderPlaced]):
    @inject
    def __init__(self, mailer: Mailer = Provide[AppContainer.mailer]) -> None:
        self.mailer = mailer

    async def executing(self, args: OrderPlaced) -> None:
        attempt = self.mailer.send_confirmation(args.order_id, args.email)
        if args.mail_failures == ALWAYS or attempt <= args.mail_failures:
            raise MailServerDown(f"could not mail order {args.order_id} (call {attempt})")


class BookOrder(BackgroundJobBase[OrderPlaced]):
    @inject
    def __init__(self, ledger: Ledger = Provide[AppContainer.ledger]) -> None:
        self.ledger = ledger

    async def executing(self, args: OrderPlaced) -> None:
        self.ledger.book(args.order_id, args.amount_cents)


@job_name("shop.export-report")
class ExportReport(BaseModel):
    report_id: int
    hang_first_run: bool = False


class ExportReportJob(BackgroundJob[ExportReport]):
    @inject
    def __init__(self, archive: ReportArchive = Provide[AppContainer.archive]) -> None:
        self.archive = archive

    async def execute(self, args: ExportReport) -> None:
        run = self.archive.record(args.report_id)
        if args.hang_first_run and run == 1:
            await anyio.sleep_forever()  # until the worker's shutdown cancels it
        self.archive.finish(args.report_id)
