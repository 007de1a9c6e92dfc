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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import structlog
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from aggregates import transfer_commands
from aggregates.halves import half_of
from aggregates.transfer import Transfer
from processor import tracing
from processor.log_setup import debugging
from processor.metrics import VendorStats
from processor.outbox.recent_transfers import RecentTransfers
from processor.outbox.results import OUTBOUND, Outbound, outbound_of
from processor.outbox.round_decisions import DECIDE_ATTEMPTS, decide_round
from processor.outbox.topic_ends import Ends, Measurements
from processor.outbox.turns import WaitsFor
from processor.outbox.vendor_client import VendorClient, VendorOutcome
from processor.store.stored_orders import StoredOrders

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
    key: str  # Idempotency-Key: the operation id, or a new one for a retry the vendor had refused
    target_id: str  # the target subscription (a new one is created when the vendor confirms)
    cause: str = ""  # the message that requested it: the vendor call continues its trace


FOLLOW_PAGE = 1000  # notifications per `follow`: a full page means more may follow
# Calls waiting for their turn are looked at again whenever something on the log could have
# freed it (an outcome, a cancel, a retry), and at least this often.
TURNS_EVERY_S = 1.0
# A call with a fixed body goes from `paired` to its outcome in one step when the vendor answers
# at once; one it has not answered within this time is recorded `sent`, so the dashboard shows
# what waits on the vendor without an event on every fast call.
SENT_AFTER_S = 1.0


class Outbox:
    """`fence`: what every write of this outbox must prove (the leadership lease it holds), so a
    leader that lost its lease while paused records nothing; `may_send`: whether it still holds
    the lease as far as it knows, asked before each new vendor call. `topic_ends` and
    `store_positions` measure the orders topic and what the store applied of it, for expiry."""

    def __init__(self, app: StoredOrders, publisher: Publisher, vendor: VendorClient | None, pairing_timeout_s: float,
                 clock: Callable[[], datetime], vendor_stats: VendorStats | None = None,
                 topic_ends: Callable[[], Ends | None] | None = None,
                 store_positions: Callable[[list[int]], dict[int, int]] | None = None,
                 fence: Callable[[], Any] = lambda: None, may_send: Callable[[], bool] = lambda: True) -> None:
        self.app, self.publisher, self.vendor = app, publisher, vendor
        self.vendor_stats = vendor_stats or VendorStats()
        self.pairing_timeout_s, self.clock = pairing_timeout_s, clock
        self.measurements = Measurements(topic_ends, store_positions)  # topic ends the store has yet to reach
        self.fence, self.may_send = fence, may_send
        recorder = app.process_recorder
        self.results_at = recorder.max_tracking_id(RESULTS_TRACKING) or 0
        self.work_at = recorder.max_tracking_id(WORK_TRACKING) or 0
        self.read_at = min(self.results_at, self.work_at)
        self.waiting: dict[str, Waiting] = {}
        self.calls: dict[str, Call] = {}
        self.in_flight: dict[str, float | None] = {}  # op -> monotonic time a worker handed it to the vendor
        self.marked: set[str] = set()  # in flight long enough to be recorded `sent`
        self.to_send: dict[str, None] = {}  # requested calls not yet handed to the vendor, in decision order
        self.waits_for = WaitsFor()  # calls whose turn has not come, and the transfers ahead of them
        self.to_check: set[str] = set()  # calls whose turn may have come: new ones, and those behind a closed one
        self._turns_checked = 0.0
        self.finished: queue.SimpleQueue[tuple[str, VendorOutcome | None]] = queue.SimpleQueue()  # from the calls' thread
        self.recent = RecentTransfers()
        self.published = 0
        self.at_head = False  # the last `follow` read to the log's head (as of its query)
        self.decided = False  # the last `dispatch` recorded decisions, which `follow` has yet to read

    # -- following the log ------------------------------------------------------------------
    def follow(self, limit: int = FOLLOW_PAGE) -> int:
        """Read new notifications, publish what they answer; returns how many were read."""
        self.at_head = False  # until what it read is published and tracked (a failure leaves it busy)
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
            self.at_head = True
            return 0
        last = notifications[-1].id
        if outgoing:
            self.publisher.publish(tracing.published(outgoing, self.app.traces_of))
            self.published += len(outgoing)
        self.read_at = last
        if last > self.results_at:
            self.results_at = last
            self.app.insert_tracking_once(Tracking(RESULTS_TRACKING, last))
        self._save_low_water()
        self.at_head = len(notifications) < limit
        return len(notifications)

    def follow_to_head(self, stop: Any) -> int:
        """`follow` until a page comes back less than full: the log's head as of then."""
        read = total = self.follow()
        while read >= FOLLOW_PAGE and not stop.is_set():
            read = self.follow()
            total += read
        return total

    def _keep_cached(self, notification: Any, event: Any) -> None:
        """Keep the transfers this process holds current from the events read here. Transfers are
        not cached as they open: a burst of thousands would push the subscriptions out of the
        cache; one whose call is requested goes in, rebuilt from the events read here
        (`RecentTransfers`), or loaded by the round that sends it (`round_decisions`)."""
        cache = self.app.repository.cache
        if cache is not None and not self.app.repository.fastforward:
            self.app.fast_forward_cached(notification, event)
            built = self.recent.read(event)
            if built is not None and built.id not in cache.cache:
                cache.put(built.id, built)

    def _track(self, notification_id: int, event: Any) -> None:
        op = getattr(event, "operation_id", None)
        call = getattr(event, "call", None)  # an `Opened` that requested the call at once (both halves)
        if call is not None:
            self._call_requested(notification_id, op, call["idempotency_key"], call["request"], call["message_id"])
        elif isinstance(event, OPENS_WAIT):
            if event.half is None:
                return
            half = half_of(event.side, event.half)
            op = half.operation_id
            if op not in self.waiting and op not in self.calls:
                self.waiting[op] = Waiting(notification_id, half.recorded)
        elif isinstance(event, OPENS_CALL):
            self._call_requested(notification_id, op, event.idempotency_key, event.request, event.message_id)
        elif isinstance(event, CLOSES):
            self.waiting.pop(op, None)
            self.calls.pop(op, None)
            self.to_send.pop(op, None)
            self.waits_for.drop(op)
            self._freed(op)

    def _call_requested(self, notification_id: int, op: str, key: str, request: dict[str, Any], cause: str) -> None:
        self.waiting.pop(op, None)
        self.calls.pop(op, None)  # re-inserted last: both maps stay in notification order
        self.calls[op] = Call(notification_id, key, request["target"]["subscription_id"], cause)
        self.to_send[op] = None
        self.to_check.add(op)

    def _save_low_water(self) -> None:
        # Both maps are kept in notification order, so their first entries are the oldest.
        open_ids = [next(iter(m.values())).notification_id for m in (self.waiting, self.calls) if m]
        low = min(open_ids) - 1 if open_ids else self.read_at
        if low > self.work_at:
            self.work_at = low
            self.app.insert_tracking_once(Tracking(WORK_TRACKING, low))

    # -- vendor calls -----------------------------------------------------------------------
    def dispatch(self) -> int:
        """Record the outcomes that came back and send every call whose turn has come
        (`round_decisions`): an outcome frees its subscriptions for the next call in the same
        round. Returns how many calls were answered or sent."""
        self.decided = False
        if self.vendor is None:
            return 0
        done = self._answered()
        now = time.monotonic()
        if self.to_send and now - self._turns_checked >= TURNS_EVERY_S:
            # Also now and then every waiting call: a staff action elsewhere may have freed it.
            self._turns_checked = now
            self.to_check.update(self.to_send)
        candidates = [op for op in self.to_send if op in self.to_check and op not in self.in_flight and op not in done]
        self.to_check.clear()
        slow = self._slow_calls(now)
        if not done and not candidates and not slow:
            return 0
        # Consumers write the same subscriptions (new transfers take their places): each chunk looks again.
        self.decided = True
        turns = decide_round(self.app, self.fence(), done, candidates, slow)
        self.marked.update(slow)
        self._forget(done)
        return len(done) + self._send_turns(turns)

    def _answered(self) -> dict[str, VendorOutcome]:
        """What the vendor calls' thread settled since the last round."""
        done: dict[str, VendorOutcome] = {}
        while True:
            try:
                op, outcome = self.finished.get_nowait()
            except queue.Empty:
                return done
            self.in_flight.pop(op, None)
            self.marked.discard(op)
            if outcome is not None:  # None: stopped, it stays requested in the store and is sent again
                done[op] = outcome
                self._freed(op)
            else:
                self.to_send[op] = None
                self.to_check.add(op)

    def _forget(self, done: dict[str, VendorOutcome]) -> None:
        """Answered calls, now recorded: counted, logged when they failed, and dropped."""
        for op, outcome in done.items():
            self.calls.pop(op, None)
            self.vendor_stats.record(outcome.ok, outcome.reason_code, outcome.attempts, outcome.latency_ms)
            if not outcome.ok:
                log.warning("vendor.call_failed", operation_id=op, attempts=outcome.attempts,
                            latency_ms=outcome.latency_ms, reason_code=outcome.reason_code,
                            detail=outcome.detail[:300])

    def _send_turns(self, turns: dict[str, "transfer_commands.Turn | None"]) -> int:
        """Hand every call whose turn came (its body now recorded) to the vendor client. The calls
        that must wait get one line a round (each its own at DEBUG): a burst on few subscriptions
        queues thousands, and a line each took 6% of the outbox's CPU (py-spy, `bench.hot_path`)."""
        sent, newly_waiting = 0, []
        for op, turn in turns.items():
            if turn is None:  # answered or closed meanwhile
                self.to_send.pop(op, None)
                self.waits_for.drop(op)
            elif turn.body is None:
                if self.waits_for.get(op) != turn.waits_for:
                    newly_waiting.append(op)
                    if debugging():
                        log.debug("vendor.call_waits", operation_id=op, waits_for=turn.waits_for)
                self.waits_for.wait(op, turn.waits_for)
            elif self.may_send():
                call = self.calls.get(op)
                self.to_send.pop(op, None)
                self.waits_for.drop(op)
                self.in_flight[op] = None
                self._send(op, turn.body, call.key if call is not None else op, call.cause if call is not None else "")
                sent += 1
        if newly_waiting:
            log.info("vendor.calls_wait", calls=len(newly_waiting), first=newly_waiting[:5], waiting=len(self.waits_for))
        return sent

    def _freed(self, op: str) -> None:
        """An answered or closed call: the calls that waited for it may go now."""
        self.to_check.update(self.waits_for.behind_of(op))

    def _slow_calls(self, now: float) -> list[str]:
        """Calls with a fixed body handed to the vendor at least SENT_AFTER_S ago and not yet
        marked `sent` (a call whose body was built at its turn was recorded `sent` then)."""
        return [op for op, started in self.in_flight.items()
                if started is not None and now - started >= SENT_AFTER_S and op not in self.marked]

    def _send(self, op: str, request: dict[str, Any], key: str, cause: str) -> None:
        """Hand one call to the vendor client's calls thread; its outcome (None: stopped, it stays
        requested in the store and is sent again) comes back through `finished`."""
        assert self.vendor is not None
        trace = tracing.parent(self.app.traces_of([cause]).get(cause)) if tracing.on() and cause else None
        self.vendor.submit(request, lambda outcome: self.finished.put((op, outcome)), key, self.may_send, trace,
                           on_start=lambda: self.in_flight.__setitem__(op, time.monotonic()))

    # -- pairing timeouts -------------------------------------------------------------------
    def expire(self) -> int:
        """Expire halves that waited too long, once the store has applied every partition of the
        orders topic as far as Kafka had written it after their deadline (CONTRACT.md, 1.2)."""
        if not self.waiting and not self.measurements:
            return 0
        now = self.clock()
        if any(w.recorded_at <= now - timedelta(seconds=self.pairing_timeout_s) for w in self.waiting.values()):
            self.measurements.take(now)
        cleared = self.measurements.cleared()
        if cleared is None:
            return 0
        # Every half whose deadline had passed when these ends were measured: its partner, had it
        # been in Kafka by then, would have been applied and paired by now.
        cutoff = datetime.fromtimestamp(cleared.taken_at, timezone.utc) - timedelta(seconds=self.pairing_timeout_s)
        due = [op for op, w in self.waiting.items() if w.recorded_at <= cutoff]
        expired: list[str] = []

        def change(uow: Any) -> None:
            expired.clear()
            expired.extend(op for op in due if transfer_commands.expire_transfer(uow, op, now, self.pairing_timeout_s))

        if due:
            self.app.decide(change, attempts=DECIDE_ATTEMPTS, fence=self.fence())
        for op in due:
            self.waiting.pop(op, None)
        for op in expired:
            log.info("transfer.expired", operation_id=op)
        return len(due)

    # -- idleness ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Vendor calls pending or results unpublished (waiting halves do not count)."""
        if self.in_flight or any(op not in self.waits_for for op in self.calls):
            return True  # a call waiting behind a parked one is not work this process can do
        # What the round's last `follow` found, not a query of its own: an event recorded since
        # then is read by the next round (tens of ms), whose work moves `worked_at` as it would
        # have moved this. An idle round sent three reads, each costly after the round's sleep.
        return not self.at_head

    def close(self) -> None:
        if self.vendor is not None:
            self.vendor.shutdown()  # calls not yet answered give up; they stay requested in the store

