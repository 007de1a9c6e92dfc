"""An eventsourcing Application on coterm's recorders, with an aggregate cache that follows the log."""

from typing import Any, ClassVar

from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    ProcessRecorder,
    Tracking,
)
from eventsourcing.utils import get_topic

from storage.recorders import RECORDERS, POPOSeenRecorder
from storage.transcodings import DateAsISO


class StoredApplication(Application):
    """A cache of reconstructed aggregates, not fast-forwarded on every get (one query per
    aggregate) but in bulk: `refresh_cache` reads the log written since the last look (by any
    process: other processors, the outbox process, staff actions in `coterm serve`) and applies
    those events to the cached aggregates they belong to. A write from a stale aggregate would
    fail its version check anyway; this keeps reads current."""

    # Topics of events after which an aggregate leaves the cache (e.g. a transfer that ended:
    # nothing more happens to it in the normal course, and a late message reloads it).
    leave_cache: ClassVar[frozenset[str]] = frozenset()

    def construct_recorder(self) -> ProcessRecorder:
        # A process recorder stores Kafka positions (tracking records) atomically with events;
        # ours also stores the ids of the messages seen, in the same transaction.
        module = self.env.get("PERSISTENCE_MODULE", "eventsourcing.popo")
        if module == "eventsourcing.popo":  # its factory takes no recorder topic
            return POPOSeenRecorder()
        recorder_class = RECORDERS.get(module)
        if recorder_class is not None:
            self.factory.env[self.factory.PROCESS_RECORDER_TOPIC] = get_topic(recorder_class)
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def insert_tracking_once(self, tracking: Tracking) -> None:
        """Record a position of a follower (e.g. the outbox's); one already there (recorded by an
        earlier leader, or by this one before a lost connection hid the answer) is no error."""
        try:
            self.process_recorder.insert_tracking(tracking)
        except IntegrityError:
            if (self.process_recorder.max_tracking_id(tracking.application_name) or 0) < tracking.notification_id:
                raise

    def seen(self, message_ids: "list[str]") -> set[str]:
        """Which of these inbound message ids were recorded already."""
        return self.recorder.seen(message_ids) if message_ids else set()  # type: ignore[attr-defined]

    def refresh_cache(self, page: int = 5000) -> None:
        """Bring cached aggregates up to date with what was recorded since the last look, in
        bulk: one read of the log, decoding only the events of aggregates held in the cache."""
        cache = self.repository.cache
        if cache is None or self.repository.fastforward:
            return
        position = getattr(self, "_cache_position", None)
        if position is None:  # the cache is empty: whatever it loads from now on is current
            self._cache_position = self.recorder.max_notification_id() or 0  # type: ignore[attr-defined]
            return
        while True:
            notifications = self.process_recorder.select_notifications(start=position + 1, limit=page)
            for n in notifications:
                self.fast_forward_cached(n)
            if notifications:
                position = self._cache_position = notifications[-1].id
            if len(notifications) < page:
                return

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
        if cached.version == notification.originator_version - 1:
            (event or self.mapper.to_domain_event(notification)).mutate(cached)
        if cached.version < notification.originator_version or notification.topic in self.leave_cache:
            cache.get(notification.originator_id, evict=True)
