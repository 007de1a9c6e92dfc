"""The outbox: follows the store's notification log to publish results, send vendor calls
and expire orphan halves. Nothing here decides business outcomes; it only carries out
what the store already records, and records what came back.

Two tracking records keep its place across restarts:
- `coterm.results`: the last notification whose result or dead letter Kafka acknowledged;
- `coterm.work`: a low-water mark below which no half waits and no vendor call is open,
  so a restart re-reads only what may still need work.
"""

import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from aggregates import commands
from aggregates.application import Orders
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer
from processor.metrics import VendorStats
from processor.results import OUTBOUND, Outbound, outbound_of
from processor.vendor_client import Stopped, VendorClient, VendorOutcome

log = structlog.get_logger("coterm.outbox")

RESULTS_TRACKING = "coterm.results"
WORK_TRACKING = "coterm.work"
OPENS_WAIT = (Transfer.Opened, Transfer.HalfReceived)  # an Opened without a half (a cancel came first) opens no wait
OPENS_CALL = Transfer.VendorCallRequested
CLOSES = (Transfer.Rejected, Transfer.Completed, Transfer.Failed, Transfer.Expired, Transfer.Cancelled)
# Every Transfer event is read (VendorCallSent too), so the transfers this process acts on
# are kept current in its aggregate cache from the log itself (`_keep_cached`).
TOPICS = sorted({get_topic(c) for c in (*OPENS_WAIT, OPENS_CALL, Transfer.VendorCallSent, *CLOSES, *OUTBOUND)})


class Publisher(Protocol):
    def publish(self, messages: list[Outbound]) -> None:
        """Send and wait until the broker acknowledged every message."""


@dataclass
class Waiting:
    notification_id: int
    recorded_at: datetime


@dataclass
class Call:
    notification_id: int
    request: dict[str, Any]
    key: str  # Idempotency-Key: the operation id, or a new one for a retry the vendor had refused


@dataclass
class InFlight:
    started: float | None = None  # monotonic, when a worker handed it to the vendor client
    marked: bool = False  # VendorCallSent recorded


# A call the vendor answers at once goes from `paired` to its outcome in one step; one it has
# not answered within this time is recorded as `sent` (the vendor is slow or retried), so the
# dashboard shows what waits on the vendor without an extra event on every fast call.
SENT_AFTER_S = 1.0
FOLLOW_PAGE = 1000  # notifications per `follow`: a full page means more may follow


class Outbox:
    def __init__(self, app: Orders, publisher: Publisher, vendor: VendorClient | None, pairing_timeout_s: float,
                 clock: Callable[[], datetime], vendor_stats: VendorStats | None = None, workers: int = 32) -> None:
        self.app = app
        self.vendor_stats = vendor_stats or VendorStats()
        self.publisher = publisher
        self.vendor = vendor
        self.pairing_timeout_s = pairing_timeout_s
        self.clock = clock
        recorder = app.process_recorder
        self.results_at = recorder.max_tracking_id(RESULTS_TRACKING) or 0
        self.work_at = recorder.max_tracking_id(WORK_TRACKING) or 0
        self.read_at = min(self.results_at, self.work_at)
        self.waiting: dict[str, Waiting] = {}
        self.calls: dict[str, Call] = {}
        self.in_flight: dict[str, InFlight] = {}
        self.to_send: deque[str] = deque()  # calls read from the log, not yet handed to the pool
        self.finished: queue.SimpleQueue[tuple[str, VendorOutcome | None]] = queue.SimpleQueue()  # from the workers
        self._slow_checked = 0.0
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vendor")
        self.published = 0

    # -- following the log ------------------------------------------------------------------
    def follow(self, limit: int = FOLLOW_PAGE) -> int:
        """Read new notifications, publish what they answer; returns how many were read."""
        notifications = self.app.process_recorder.select_notifications(
            start=self.read_at + 1, limit=limit, topics=TOPICS)
        outgoing: list[Outbound] = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            self._keep_cached(notification, event)
            self._track(notification.id, event)
            if notification.id > self.results_at:
                message = outbound_of(event)
                if message is not None:
                    outgoing.append(message)
        if not notifications:
            return 0
        last = notifications[-1].id
        if outgoing:
            self.publisher.publish(outgoing)
            self.published += len(outgoing)
        self.read_at = last
        if last > self.results_at:
            self.results_at = last
            self.app.process_recorder.insert_tracking(Tracking(RESULTS_TRACKING, last))
        self._save_low_water()
        return len(notifications)

    def follow_to_head(self, stop: Any) -> int:
        """`follow` until a page comes back less than full: the log's head as of then."""
        read = total = self.follow()
        while read >= FOLLOW_PAGE and not stop.is_set():
            read = self.follow()
            total += read
        return total

    def _keep_cached(self, notification: Any, event: Any) -> None:
        """The consumer's process writes the transfers this one completes: build them in the
        cache from the events read here, rather than reconstruct each one from the store."""
        cache = self.app.repository.cache
        if cache is None or self.app.repository.fastforward:
            return
        if isinstance(event, Transfer.Opened):
            try:
                cache.get(event.originator_id)
            except KeyError:
                cache.put(event.originator_id, event.mutate(None))
            return
        self.app.fast_forward_cached(notification, event)

    def _track(self, notification_id: int, event: Any) -> None:
        op = getattr(event, "operation_id", None)
        if isinstance(event, OPENS_WAIT):
            if event.half is None:
                return
            op = event.half["operation_id"]
            if op not in self.waiting and op not in self.calls:
                self.waiting[op] = Waiting(notification_id, datetime.fromisoformat(event.half["recorded_at"]))
        elif isinstance(event, OPENS_CALL):
            self.waiting.pop(op, None)
            self.calls.pop(op, None)  # re-inserted last: both maps stay in notification order
            self.calls[op] = Call(notification_id, event.request, event.idempotency_key)
            self.to_send.append(op)
        elif isinstance(event, CLOSES):
            self.waiting.pop(op, None)
            self.calls.pop(op, None)

    def _save_low_water(self) -> None:
        # Both maps are kept in notification order, so their first entries are the oldest.
        open_ids = [next(iter(m.values())).notification_id for m in (self.waiting, self.calls) if m]
        low = min(open_ids) - 1 if open_ids else self.read_at
        if low > self.work_at:
            self.work_at = low
            self.app.process_recorder.insert_tracking(Tracking(WORK_TRACKING, low))

    # -- vendor calls -----------------------------------------------------------------------
    def dispatch(self) -> int:
        """Send every requested call not yet in flight; record the outcomes that came back,
        all of them in one transaction (one per round, not one per call)."""
        if self.vendor is None:
            return 0
        while self.to_send:
            op = self.to_send.popleft()
            call = self.calls.get(op)
            if call is not None and op not in self.in_flight:
                flight = self.in_flight[op] = InFlight()
                self.pool.submit(self._send, op, flight, call.request, call.key)
        done: dict[str, VendorOutcome] = {}
        while True:
            try:
                op, outcome = self.finished.get_nowait()
            except queue.Empty:
                break
            self.in_flight.pop(op, None)
            if outcome is not None:  # None: stopped, it stays requested in the store and is sent on restart
                done[op] = outcome
        slow = self._slow_calls()
        if done or slow:
            new_targets = [Subscription.create_id(self.calls[op].request["target"]["subscription_id"])
                           for op in done if op in self.calls]
            self.app.decide(lambda uow: (uow.prefetch(new_targets), self._record(uow, done, slow)))
            for op in slow:
                self.in_flight[op].marked = True
            for op, outcome in done.items():
                self.calls.pop(op, None)
                self.vendor_stats.record(outcome.ok, outcome.reason_code, outcome.attempts, outcome.latency_ms)
                if not outcome.ok:
                    log.warning("vendor.call_failed", operation_id=op, attempts=outcome.attempts,
                                latency_ms=outcome.latency_ms, reason_code=outcome.reason_code,
                                detail=outcome.detail[:300])
        return len(done)

    def _slow_calls(self) -> list[str]:
        """Calls handed to the vendor at least SENT_AFTER_S ago and not yet marked `sent`
        (looked for a few times a second, not on every round)."""
        now = time.monotonic()
        if now - self._slow_checked < SENT_AFTER_S / 4:
            return []
        self._slow_checked = now
        return [op for op, f in self.in_flight.items()
                if not f.marked and f.started is not None and now - f.started >= SENT_AFTER_S]

    def _send(self, op: str, flight: InFlight, request: dict[str, Any], key: str) -> None:
        assert self.vendor is not None
        flight.started = time.monotonic()
        try:
            self.finished.put((op, self.vendor.send(request, key)))
        except Stopped:
            self.finished.put((op, None))

    @staticmethod
    def _record(uow: Any, done: dict[str, VendorOutcome], slow: list[str]) -> None:
        for op, outcome in done.items():
            if outcome.ok:
                assert outcome.vendor_reference is not None
                commands.record_vendor_success(uow, op, outcome.vendor_reference, outcome.attempts, outcome.latency_ms)
            else:
                assert outcome.reason_code is not None
                commands.record_vendor_failure(uow, op, outcome.reason_code, outcome.detail, outcome.retryable,
                                               outcome.attempts)
        for op in slow:
            commands.mark_vendor_call_sent(uow, op)

    # -- pairing timeouts -------------------------------------------------------------------
    def expire(self, caught_up: bool) -> int:
        """Expire halves that waited too long; only while all input on our partitions is read."""
        if not caught_up:
            return 0
        now = self.clock()
        due = [op for op, w in self.waiting.items() if (now - w.recorded_at).total_seconds() >= self.pairing_timeout_s]
        for op in due:
            if self.app.decide(lambda uow, op=op: commands.expire_transfer(uow, op, now, self.pairing_timeout_s)):
                log.info("transfer.expired", operation_id=op)
            self.waiting.pop(op, None)
        return len(due)

    # -- idleness ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Vendor calls pending or results unpublished (waiting halves do not count)."""
        if self.calls or self.in_flight:
            return True
        return bool(self.app.process_recorder.select_notifications(start=self.read_at + 1, limit=1, topics=TOPICS))

    def close(self) -> None:
        if self.vendor is not None:
            self.vendor.stop.set()  # calls in backoff give up; they stay requested in the store
        self.pool.shutdown(wait=True, cancel_futures=True)
