"""`Orders` on coterm's store: an aggregate cache that follows the log, seen message ids, and
follower positions recorded once."""

from typing import Any

from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from aggregates.application import Orders, UnitOfWork

PAGE = 5000  # events a look at the log reads at most


class StoredOrders(Orders):
    """A cache of reconstructed aggregates, not fast-forwarded on every get (one query per
    aggregate) but in bulk: `refresh_cache`, run before each unit of work, reads the log written
    since the last look (by any process: other processors, the outbox process, staff actions in
    `coterm serve`) and applies those events to the cached aggregates they belong to. A write
    from a stale aggregate would fail its version check anyway; this keeps reads current."""

    name = Orders.name  # the library names a subclass after itself, and its tables after its name
    env = {**Orders.env, "AGGREGATE_CACHE_FASTFORWARD": "n"}

    def refresh_cache(self, page: int = PAGE) -> None:
        """Bring cached aggregates up to date with what was recorded since the last look, in
        bulk: one read of the log, decoding only the events of aggregates held in the cache."""
        if not self._follows_log():
            return
        position = getattr(self, "_cache_position", None)
        if position is None:  # the cache is empty: whatever it loads from now on is current
            self._cache_position = self.process_recorder.max_notification_id() or 0
            return
        # Plain rows (`select_rows`): most events belong to aggregates not cached here, and
        # only those that are cached are decoded.
        while self._fast_forward(self.process_recorder.select_rows(position + 1, page, None, ()), page):  # type: ignore[attr-defined]
            position = self._cache_position

    def read_poll(self, names: list[str], message_ids: list[str],
                  new_ids: list[UUID]) -> tuple[UnitOfWork, dict[str, int], set[str]]:
        """What applying a poll reads before it writes: the partitions' positions (by position
        name), a unit of work on a cache brought up to date (`refresh_cache`) that knows which
        of `new_ids` exist (`UnitOfWork.prefetch`), and which `message_ids` were recorded
        already. One round trip where the recorder reads them together (`read_poll`): on
        PostgreSQL they were four a poll, and a poll at 200 transfers/s holds a few records."""
        recorder: Any = self.process_recorder
        position = getattr(self, "_cache_position", None)
        if not hasattr(recorder, "read_poll") or not self._follows_log() or position is None:
            positions = (recorder.max_tracking_ids(names) if hasattr(recorder, "max_tracking_ids") else
                         {name: at for name in names if (at := recorder.max_tracking_id(name)) is not None})
            uow = self.unit_of_work()
            seen = self.seen(message_ids)
            uow.prefetch(new_ids)
            return uow, positions, seen
        reads = recorder.read_poll(names, position + 1, PAGE, message_ids, list(dict.fromkeys(new_ids)))
        if self._fast_forward(reads.rows, PAGE):
            self.refresh_cache()  # more than a page was written since the last look
        uow = UnitOfWork(self)
        uow.prefetch(new_ids, existing=reads.existing)
        return uow, reads.positions, reads.seen

    def _follows_log(self) -> bool:
        return self.repository.cache is not None and not self.repository.fastforward

    def _fast_forward(self, rows: list[tuple[int, str, int, str, bytes]], page: int) -> bool:
        """Apply these rows of the log to the cached aggregates they belong to; True when they
        were a whole page (more may follow)."""
        cache = self.repository.cache
        assert cache is not None
        for position, hex_id, version, topic, state in rows:
            aggregate_id = UUID(hex=hex_id)
            if aggregate_id in cache.cache:
                self.fast_forward_cached(StoredEvent(aggregate_id, version, topic, state))
        if rows:
            self._cache_position = rows[-1][0]
        return len(rows) >= page

    def _record(self, processing_event: Any) -> Any:
        """Record, then move the cache's read position past these events when they come right
        after it: this process's cache already holds what they did (`Application._record` put the
        aggregates in it), so `refresh_cache` need not read them back. With anything in between
        (another writer), the position stays and the refresh reads it all, these included."""
        recordings = super()._record(processing_event)
        position = getattr(self, "_cache_position", None)
        cache = self.repository.cache
        if recordings and position is not None and cache is not None and not self.repository.fastforward:
            first, last = recordings[0].notification.id, recordings[-1].notification.id
            if first == position + 1 and last == position + len(recordings):
                self._cache_position = last
                for recording in recordings:  # what a refresh would have done with them: evict ended transfers
                    self.fast_forward_cached(recording.notification)
        return recordings

    def fast_forward_cached(self, notification: Any, event: Any = None) -> None:
        """Apply one recorded event to its aggregate if cached one version behind; evict it if
        further behind, or once the event is one of `leave_cache`. `event`: the notification
        already decoded, when the caller has it."""
        cache = self.repository.cache
        assert cache is not None
        try:
            cached = cache.get(notification.originator_id)
        except KeyError:
            return
        if notification.topic in self.leave_cache:  # no use decoding what leaves: the consumer read
            cache.get(notification.originator_id, evict=True)  # every Transfer.Completed only to drop it
            return
        if cached.version == notification.originator_version - 1:
            (event or self.mapper.to_domain_event(notification)).mutate(cached)
        if cached.version < notification.originator_version:
            cache.get(notification.originator_id, evict=True)

    def seen(self, message_ids: "list[str]") -> set[str]:
        """Which of these inbound message ids were recorded already."""
        return self.recorder.seen(message_ids) if message_ids else set()  # type: ignore[attr-defined]

    def traces_of(self, message_ids: "list[str]") -> dict[str, str]:
        """The `traceparent` recorded with each of these inbound messages (when tracing was on)."""
        return self.recorder.traces_of(message_ids) if message_ids else {}  # type: ignore[attr-defined]

    def insert_tracking_once(self, tracking: Tracking) -> None:
        """Record a position of a follower (e.g. the outbox's); one already there (recorded by an
        earlier leader, or by this one before a lost connection hid the answer) is no error."""
        move = getattr(self.process_recorder, "move_position", None)
        if move is not None and move(tracking):
            return
        try:
            self.process_recorder.insert_tracking(tracking)
        except IntegrityError:
            if (self.process_recorder.max_tracking_id(tracking.application_name) or 0) < tracking.notification_id:
                raise
