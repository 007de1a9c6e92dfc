"""The eventsourcing Application holding every aggregate, and the unit of work commands use."""

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    ProcessRecorder,
    Tracking,
    Transcoding,
)
from eventsourcing.utils import get_topic

from aggregates.calendar import Calendar
from aggregates.catalog import Catalog
from aggregates.customer import Customer
from aggregates.partner import Partner
from aggregates.reconciliation import Reconciliation
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


class KeptConflicting(RuntimeError):
    """Other writers changed the same aggregates on every attempt."""


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class Orders(Application):
    """All of coterm's history in one notification log, so read models and the outbox follow one sequence.

    The store comes by injection, the library's way: `PERSISTENCE_MODULE` names a factory
    (`processor/store/factories.py` builds coterm's recorders; `processor.store.StoredOrders`
    adds the cache that follows the log). Here only the library's interfaces are used; the
    batched lookups of coterm's recorders (`existing`, `events_of`) are used when present."""

    name = "coterm"
    # Cached aggregates are not copied on get: a unit of work that fails evicts every
    # aggregate it touched (`UnitOfWork.discard`), so no half-applied change stays cached.
    # Stored events are decoded and encoded by msgspec (`aggregates.transcoder`), the bytes the library's `json` writes.
    env = {"AGGREGATE_CACHE_MAXSIZE": "5000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
           "TRANSCODER_TOPIC": "aggregates.transcoder:MsgspecTranscoder"}
    is_snapshotting_enabled = True
    snapshotting_intervals = {Catalog: 100, Customer: 100, Subscription: 100, Partner: 100,  # type: ignore[dict-item]
                              Calendar: 100, Reconciliation: 100}
    # A transfer that ended leaves the cache: the room is better spent on the operations still open.
    leave_cache = frozenset(get_topic(c) for c in (Transfer.Completed, Transfer.Rejected, Transfer.Failed,
                                                   Transfer.Expired, Transfer.Cancelled))

    def construct_recorder(self) -> ProcessRecorder:
        # A process recorder: it stores Kafka positions (tracking records) atomically with events.
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def refresh_cache(self) -> None:
        """Bring cached aggregates up to date before a unit of work: nothing to do here, where the
        library's cache fast-forwards each aggregate it hands out (`processor.store.StoredOrders`
        does it in bulk from the log instead)."""

    def _take_snapshots(self, processing_event: Any) -> None:
        """The library's rule (a snapshot when an event's version is a multiple of the interval),
        taken from the aggregate just recorded when that event is its last: the library rebuilt it
        from the store (the last snapshot and up to 100 events after it), which made snapshots a
        cost that grew with history (py-spy, `bench.hot_path --prefill`). Otherwise the library's
        way, at that version."""
        if not self.snapshots or not self.snapshotting_intervals:
            return
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if aggregate is None or interval is None or event.originator_version % interval:
                continue
            if aggregate.version == event.originator_version:
                snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
                self.snapshots.put([snapshot_class.take(aggregate)])
            else:
                self.take_snapshot(event.originator_id, event.originator_version, projector_func=_project)

    # A turn at writing, from reading state to committing: `coterm run`'s two processes take turns
    # (`processor.store.write_turns`) instead of throwing away work the other's commit conflicted with.
    turn: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext

    def unit_of_work(self) -> "UnitOfWork":
        self.refresh_cache()
        return UnitOfWork(self)

    def decide(self, change: Callable[["UnitOfWork"], T], attempts: int = 5, fence: Any = None) -> T:
        """Run `change` on fresh state and commit it; when another writer got there first
        (a version conflict), look again. Exceptions from `change` pass through uncommitted.
        `fence`: a lease the transaction must find still held (`processor.store.recorders.Fence`), or it records nothing."""
        for attempt in range(attempts):
            try:
                with self.turn():
                    uow = self.unit_of_work()
                    try:
                        result = change(uow)
                    except BaseException:
                        uow.discard()
                        raise
                    self.commit(uow, fence=fence)
            except IntegrityError:
                time.sleep(random.uniform(0, 0.002 * attempt))  # two writers retrying in step would meet again
                continue
            return result
        raise KeptConflicting(f"the change kept conflicting with other writers after {attempts} attempts")

    def reload(self, aggregate_ids: "Sequence[UUID]") -> None:
        """Put these aggregates back in the cache, rebuilt with one query for all: a version
        conflict evicted those its unit changed, and the retry would otherwise rebuild each with
        two of its own (its snapshot, its events), one after another. On PostgreSQL at 200
        transfers/s a conflicted poll took 250-400 ms so, a dozen subscriptions long."""
        if aggregate_ids and self.repository.cache is not None:
            UnitOfWork(self).load_many(Aggregate, list(aggregate_ids))

    def records_positions_together(self) -> bool:
        """Whether a commit may carry several positions (coterm's recorders; not the library's)."""
        return getattr(self.recorder, "positions_together", False)

    def commit(self, uow: "UnitOfWork", tracking: Tracking | Sequence[Tracking] | None = None,
               seen: "list[tuple[str, str]] | None" = None, fence: Any = None,
               traces: "list[tuple[str, str]] | None" = None) -> int:
        """Record every change of the unit, the positions it came from (one or several, e.g. a
        poll's partitions), the message ids it saw and their trace contexts, in one transaction.
        On failure the unit's aggregates leave the cache. (`seen`, `fence`, `traces` and the
        positions after the first go to coterm's recorders, `more_tracking`.)"""
        positions = [] if tracking is None else [tracking] if isinstance(tracking, Tracking) else list(tracking)
        if len(positions) > 1 and not self.records_positions_together():
            raise TypeError(f"{type(self.recorder).__name__} records one position a transaction, not {len(positions)}")
        processing: ProcessingEvent[UUID] = ProcessingEvent(positions[0] if positions else None)
        changed = uow.changed()  # collecting takes their pending events: name them first
        try:
            # What `processing.collect_events` does, without its isinstance checks against
            # runtime protocols: on Python 3.11 they took 3-5% of each process (py-spy).
            for aggregate in changed:
                processing.events.extend(aggregate.collect_events())
                processing.aggregates[aggregate.id] = aggregate
            processing.saved_kwargs.update(seen=seen or [], fence=fence, traces=traces or [], more_tracking=positions[1:])
            if not processing.events and not positions and not seen:
                return 0
            self._record(processing)
        except BaseException:
            uow.discard(changed)
            raise
        self._take_snapshots(processing)
        return len(processing.events)


class UnitOfWork:
    """Aggregates loaded or created while handling one batch; each is loaded at most once."""

    def __init__(self, app: Application) -> None:
        self._app = app
        self._aggregates: dict[UUID, Aggregate | None] = {}
        self.discarded: list[UUID] = []  # what `discard` evicted: a retry brings them back (`Orders.reload`)

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if aggregate_id not in self._aggregates:
            try:
                self._aggregates[aggregate_id] = self._app.repository.get(aggregate_id, projector_func=_project)
            except AggregateNotFoundError:
                self._aggregates[aggregate_id] = None
        found = self._aggregates[aggregate_id]
        return None if found is None else _of_class(cls, aggregate_id, found)

    def prefetch(self, aggregate_ids: "list[UUID]", existing: "set[UUID] | None" = None) -> None:
        """Learn in one query which of these aggregates do not exist, so that looking them up
        later costs nothing (a cached aggregate exists; the rest are asked about together).
        `existing`: which of them exist, asked already (`StoredOrders.read_poll`)."""
        todo = [aggregate_id for aggregate_id, cached in self._not_held(aggregate_ids) if cached is None]
        if todo and existing is None and hasattr(self._app.recorder, "existing"):  # else each is looked up when asked for
            existing = self._app.recorder.existing(todo)
        if todo and existing is not None:
            for aggregate_id in todo:
                if aggregate_id not in existing:
                    self._aggregates[aggregate_id] = None

    def load_many(self, cls: type[A], aggregate_ids: "list[UUID]") -> None:
        """Load these aggregates (the ones neither held nor cached) with one query per 400
        instead of two each, e.g. a bulk migration's customers, the subscriptions an outbox
        round completes transfers on; `get` then finds them. Each is rebuilt from its latest
        snapshot and the events after it."""
        todo = []
        for aggregate_id, cached in self._not_held(aggregate_ids):
            if cached is None:
                todo.append(aggregate_id)
            else:
                self._aggregates[aggregate_id] = _of_class(cls, aggregate_id, cached)
        if not todo or not hasattr(self._app.recorder, "events_of"):  # else each is loaded when asked for
            return
        built: dict[UUID, Aggregate] = {}
        snapshots = getattr(self._app.snapshots, "recorder", None)
        table = getattr(snapshots, "events_table_name", None)  # the library's in-memory store has none: every event
        for stored in self._app.recorder.events_of(todo, snapshots=table):
            event = self._app.mapper.to_domain_event(stored)
            built[stored.originator_id] = event.mutate(built.get(stored.originator_id))  # type: ignore[assignment]
        cache = self._app.repository.cache
        for aggregate_id in todo:
            aggregate = built.get(aggregate_id)
            self._aggregates[aggregate_id] = None if aggregate is None else _of_class(cls, aggregate_id, aggregate)
            if aggregate is not None and cache is not None:
                cache.put(aggregate_id, aggregate)

    def _not_held(self, aggregate_ids: "list[UUID]") -> "list[tuple[UUID, Aggregate | None]]":
        """Each of these ids this unit does not hold yet, once, with its aggregate from the
        application's cache (None when not cached): what `prefetch` and `load_many` ask about."""
        cache = self._app.repository.cache
        found: list[tuple[UUID, Aggregate | None]] = []
        for aggregate_id in dict.fromkeys(aggregate_ids):
            if aggregate_id in self._aggregates:
                continue
            cached = None
            if cache is not None:
                try:
                    cached = cache.get(aggregate_id)
                except KeyError:
                    pass
            found.append((aggregate_id, cached))
        return found

    def discard(self, changed: "list[Aggregate] | None" = None) -> None:
        """The unit failed: evict the aggregates it changed from the application's cache (they
        hold changes that were never recorded; default: those with pending events). The ones it
        only read stay: the next unit brings them current from the log. (Evicting those too made
        every version conflict of the outbox rebuild hundreds of subscriptions from the store.)"""
        self.discarded = [aggregate.id for aggregate in (self.changed() if changed is None else changed)]
        cache = self._app.repository.cache
        if cache is not None:
            for aggregate_id in self.discarded:
                try:
                    cache.get(aggregate_id, evict=True)
                except KeyError:
                    pass
        self._aggregates.clear()

    def add(self, aggregate: A) -> A:
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    def record_last(self, aggregate: A) -> A:
        """Its events go after every other aggregate's in the transaction (and so in the log and
        in what the outbox publishes): e.g. a bulk's summary after its customers' results."""
        self._aggregates.pop(aggregate.id, None)
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    def changed(self) -> list[Aggregate]:
        return [a for a in self._aggregates.values() if a is not None and a.pending_events]


def _project(aggregate: Any, events: Any) -> Any:
    """The library's `project_aggregate` without its `isinstance` check against a runtime
    protocol on every event: on Python 3.11 that check took 4% of the outbox process (py-spy)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _of_class(cls: type[A], aggregate_id: UUID, aggregate: Aggregate) -> A:
    if not isinstance(aggregate, cls):
        raise TypeError(f"{aggregate_id} is a {type(aggregate).__name__}, not a {cls.__name__}")
    return aggregate


def plain(value: Any) -> Any:
    """Dates to ISO strings, recursively: for facts that leave the domain as text."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
