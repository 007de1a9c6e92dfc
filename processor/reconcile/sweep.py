"""One reconciliation pass: every subscription's seats asked of the vendor and compared.

Subscriptions are taken in aggregate-id order from the store itself (not the read models,
which may lag or be rebuilding), a page at a time; the pass records where it is after each
page (`Reconciliation`), so a stopped pass resumes there. The vendor is asked at most
`rate_per_s` times a second, through the vendor client's shared limiter and retries.

A count proves something only if no call could have changed it behind coterm's view: a
subscription with a transfer in flight is skipped and come back to, and one recorded on
between being looked at and being answered is come back to as well (`drift_commands`).
"""

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.utils import get_topic

from aggregates.drift_commands import Observed, record_vendor_seats
from aggregates.reconciliation import COUNTS, Reconciliation
from aggregates.subscription import Subscription
from processor.outbox.vendor_client import Stopped, VendorClient

log = structlog.get_logger("coterm.reconcile")
PAGE = 500
PURCHASED = get_topic(Subscription.Purchased)  # every subscription's first event, co-termed targets' too
REVISIT_EVERY_S = 1.0


class Interrupted(Exception):
    """The pass stopped before its end (stopping, leadership lost, another pass took over): it resumes later."""


@dataclass
class PassReport:
    pass_id: str
    by: str
    started_at: str
    resumed: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    in_flight: list[str] = field(default_factory=list)  # still in flight when the pass ended: next pass
    finished_at: str | None = None


class Pacer:
    """At most `rate_per_s` vendor reads a second (0: no limit)."""

    def __init__(self, rate_per_s: float, stop: threading.Event) -> None:
        self.gap = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.next_at = time.monotonic()
        self.stop = stop

    def wait(self) -> None:
        now = time.monotonic()
        if self.next_at > now and self.stop.wait(self.next_at - now):
            raise Stopped()
        self.next_at = max(self.next_at, now) + self.gap


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Sweep:
    def __init__(self, app: Any, vendor: VendorClient, by: str, rate_per_s: float,
                 stop: threading.Event | None = None, may_run: Callable[[], bool] = lambda: True,
                 revisit_for_s: float = 30.0) -> None:
        """`by`: who runs it (in every drift it records); `may_run`: asked before each read (the
        scheduled pass runs while its processor leads); `revisit_for_s`: how long the pass waits
        for subscriptions in flight before leaving them to the next pass."""
        self.app = app
        self.vendor = vendor
        self.by = by
        self.stop = stop or threading.Event()
        self.pacer = Pacer(rate_per_s, self.stop)
        self.may_run = may_run
        self.revisit_for_s = revisit_for_s

    def run(self, restart: bool = False) -> PassReport:
        """One whole pass (the stored one resumed, unless `restart`); raises Interrupted,
        or the vendor client's VendorUnreachable / VendorReadRefused, with its progress kept."""
        report, after, revisit = self._begin(restart)
        log.info("reconcile.pass_started", pass_id=report.pass_id, resumed=report.resumed, after=after)
        select = self.app.process_recorder.select_rows_by_aggregate
        while True:
            page = select((after, 2**31 - 1), None, 2**62, [PURCHASED], PAGE)
            if not page:
                break
            ids = [UUID(hex=row[1]) for row in page]
            uow = self.app.unit_of_work()
            uow.load_many(Subscription, ids)
            for aggregate_id in ids:
                subscription = uow.get(Subscription, aggregate_id)
                if subscription is not None and self._check(subscription, report) is not None:
                    revisit.append(subscription.subscription_id)
            after = page[-1][1]
            self._save(report, after, revisit)
        report.in_flight = self._revisit(revisit, report)
        return self._finish(report)

    def _check(self, subscription: Subscription, report: PassReport) -> Observed | None:
        """Compare one subscription; returns what makes it one to come back to, else None."""
        if subscription.in_flight:
            return Observed.MOVED
        if self.stop.is_set() or not self.may_run():
            raise Interrupted("the pass may not run on now")
        self.pacer.wait()
        vendor_seats = self.vendor.seats(subscription.subscription_id)
        report.counts["checked"] += 1
        if vendor_seats is None:
            report.counts["vendor_unknown"] += 1
            return None
        if vendor_seats == subscription.seats and subscription.drift_pair is None:
            report.counts["agrees"] += 1
            return None
        found_by = f"{self.by} (reconciliation pass {report.pass_id})"
        observed = self.app.decide(lambda uow: record_vendor_seats(
            uow, subscription.subscription_id, vendor_seats, subscription.version, _now(), found_by))
        if observed is Observed.MOVED:
            report.counts["moved"] += 1
            report.counts["checked"] -= 1  # counted when it is compared for good
            return observed
        if observed is not Observed.UNKNOWN:
            report.counts[observed.value] += 1
        if observed is Observed.DRIFT:
            log.warning("reconcile.drift", subscription_id=subscription.subscription_id, coterm_seats=subscription.seats,
                        vendor_seats=vendor_seats, pass_id=report.pass_id)
        return None

    def _revisit(self, revisit: list[str], report: PassReport) -> list[str]:
        """Come back to the subscriptions skipped (in flight, or moved while asked) until each is
        compared or `revisit_for_s` is up; those left are the next pass's."""
        deadline = time.monotonic() + self.revisit_for_s
        pending = list(dict.fromkeys(revisit))
        report.counts["revisited"] += len(pending)
        while pending:
            uow = self.app.unit_of_work()
            again = []
            for subscription_id in pending:
                subscription = uow.get(Subscription, Subscription.create_id(subscription_id))
                if subscription is not None and self._check(subscription, report) is not None:
                    again.append(subscription_id)
            pending = again
            if not pending or time.monotonic() >= deadline:
                break
            if self.stop.wait(REVISIT_EVERY_S):
                raise Interrupted("stopping")
        report.counts["in_flight"] = len(pending)
        return pending

    # -- the pass's record ------------------------------------------------------------------------
    def _begin(self, restart: bool) -> tuple[PassReport, str, list[str]]:
        def change(uow: Any) -> tuple[PassReport, str, list[str]]:
            passes = uow.get(Reconciliation, Reconciliation.create_id()) or uow.add(Reconciliation())
            current = passes.current
            if current is None or restart:
                passes.start(pass_id=str(uuid.uuid4()), started_at=_now(), by=self.by)
                current, resumed = passes.current, False
            else:
                resumed = True
            report = PassReport(current["pass_id"], current["by"], current["started_at"], resumed,
                                counts=dict(current["counts"]))
            return report, current["after"], list(current["revisit"])

        return self.app.decide(change)  # type: ignore[no-any-return]

    def _save(self, report: PassReport, after: str, revisit: list[str]) -> None:
        def change(uow: Any) -> None:
            passes = uow.get(Reconciliation, Reconciliation.create_id())
            if passes is None or passes.current is None or passes.current["pass_id"] != report.pass_id:
                raise Interrupted("another reconciliation pass took over")
            if after > passes.current["after"]:  # two reconcilers on one pass: the further one counts
                passes.progress(pass_id=report.pass_id, after=after, counts=dict(report.counts),
                                revisit=list(dict.fromkeys(revisit)))

        self.app.decide(change)

    def _finish(self, report: PassReport) -> PassReport:
        report.finished_at = _now()

        def change(uow: Any) -> None:
            passes = uow.get(Reconciliation, Reconciliation.create_id())
            if passes is not None and passes.current is not None and passes.current["pass_id"] == report.pass_id:
                passes.finish(pass_id=report.pass_id, finished_at=report.finished_at, counts=dict(report.counts),
                              in_flight=report.in_flight)

        self.app.decide(change)
        log.info("reconcile.pass_finished", pass_id=report.pass_id, **report.counts)
        return report

