"""The jobs of ``masa-jobs demo``: a sign-up flow with a flaky CRM and a declined card.

Imported only when the demo runs: the registry registers every imported
handler class, and an application importing masa_jobs must not get these.
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobBase, job_name

__all__ = [
    "CRM_FAILURES",
    "DECLINED_CARD",
    "FLAKY_CRM_USER",
    "LEDGER",
    "ChargeTrial",
    "ChargeTrialCard",
    "FollowUpMail",
    "SendFollowUpMail",
    "SendWelcomeMail",
    "SyncToCrm",
    "UserSignedUp",
]

# The CRM times out on this user's record this many times before it answers.
FLAKY_CRM_USER = "grace"
CRM_FAILURES = 2
# The payment provider refuses this card every time: the job must end dead.
DECLINED_CARD = "0002"
# Pretend network round trips: long enough to see jobs in "processing".
SMTP_SECONDS = 0.15
CRM_SECONDS = 0.05
PAYMENT_SECONDS = 0.1

WELCOME_MAIL = "welcome mail"
CRM_SYNC = "CRM sync"
FOLLOW_UP_MAIL = "follow-up mail"
CHARGE = "card charge"


class HandlerLedger:
    """How many times each handler ran for each user, and when: what the summary shows."""

    def __init__(self) -> None:
        self.runs: Counter[tuple[str, str]] = Counter()
        self.last_ran_at: dict[tuple[str, str], float] = {}

    def record(self, handler: str, user: str) -> int:
        """Count one run; returns how many times ``handler`` has run for ``user``."""
        key = (handler, user)
        self.runs[key] += 1
        self.last_ran_at[key] = time.time()
        return self.runs[key]


LEDGER = HandlerLedger()


class CrmUnavailableError(ConnectionError):
    """The CRM did not answer in time."""


class CardDeclinedError(RuntimeError):
    """The payment provider refused the card; retrying cannot help."""


@job_name("demo.user-signed-up")
class UserSignedUp(BaseModel):
    user: str
    email: str


@job_name("demo.follow-up-mail")
class FollowUpMail(BaseModel):
    user: str
    email: str


@job_name("demo.charge-trial")
class ChargeTrial(BaseModel):
    user: str
    card_last4: str


class SendWelcomeMail(BackgroundJobBase[UserSignedUp]):
    """First handler of a sign-up: never fails, so it must run once per job."""

    async def executing(self, args: UserSignedUp) -> None:
        await anyio.sleep(SMTP_SECONDS)
        LEDGER.record(WELCOME_MAIL, args.user)
        self.logger.info("welcome mail sent to %s", args.email)


class SyncToCrm(BackgroundJob[UserSignedUp]):
    """Second handler of a sign-up: flaky for one user, so only it runs again."""

    async def execute(self, args: UserSignedUp) -> None:
        await anyio.sleep(CRM_SECONDS)
        run = LEDGER.record(CRM_SYNC, args.user)
        if args.user == FLAKY_CRM_USER and run <= CRM_FAILURES:
            raise CrmUnavailableError(f"CRM timed out saving {args.user} (call {run})")


class SendFollowUpMail(BackgroundJobBase[FollowUpMail]):
    """A mail enqueued with a delay: it must not run before the delay is over."""

    async def executing(self, args: FollowUpMail) -> None:
        await anyio.sleep(SMTP_SECONDS)
        LEDGER.record(FOLLOW_UP_MAIL, args.user)
        self.logger.info("follow-up tips sent to %s", args.email)


class ChargeTrialCard(BackgroundJobBase[ChargeTrial]):
    """Charges the trial fee; one card is always declined, so its job ends dead."""

    async def executing(self, args: ChargeTrial) -> None:
        await anyio.sleep(PAYMENT_SECONDS)
        LEDGER.record(CHARGE, args.user)
        if args.card_last4 == DECLINED_CARD:
            raise CardDeclinedError(f"card ending {args.card_last4} was declined")
