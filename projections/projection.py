"""Keep the read models current by pulling the store's notification log (both stores),
each batch written with its position in one transaction."""

import time
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError, OperationalError, Tracking
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import get_topic

from aggregates.application import Orders
from projections.doc_json import load
from projections.plain_events import PlainEvents
from projections.projector import PROJECTORS, TABLE_OF, Rows, project
from projections.recorders import PostgresReadModels, SQLiteReadModels

log = structlog.get_logger("coterm.projection")

TOPICS = sorted(get_topic(cls) for cls in PROJECTORS)


def read_models(app: Orders, prefix: str = "rm", create: bool = True) -> SQLiteReadModels | PostgresReadModels:
    """`create` False: the tables exist (made under `open_store`'s lock); PostgreSQL fails one of
    two sessions running the same CREATE at once."""
    datastore = app.factory.datastore  # type: ignore[attr-defined]
    cls = PostgresReadModels if isinstance(app.factory, PostgresFactory) else SQLiteReadModels
    recorder = cls(datastore, prefix=prefix)
    if create:
        recorder.create_table()
    return recorder


class Projection:
    """The read models kept current in the log's order, under a position (`coterm replay`
    rebuilds them in aggregate order instead: `projections.rebuild`)."""

    def __init__(self, app: Orders, prefix: str = "rm", create: bool = True) -> None:
        self.app = app
        self.tables = read_models(app, prefix, create)
        self.name = f"{prefix}.projection"
        self.caught_up_at = 0.0  # time.monotonic() when a catch-up last found nothing left (readiness)
        self.plain = PlainEvents(app.mapper)

    @property
    def position(self) -> int:
        return self.tables.max_tracking_id(self.name) or 0

    def look(self) -> int:
        """The position, projecting nothing (another process keeps these tables): `caught_up_at`
        moves when it is at the store's head, as a catch-up that finds nothing left moves it."""
        position = self.position
        if position >= (self.app.process_recorder.max_notification_id() or 0):
            self.caught_up_at = time.monotonic()
        return position

    def catch_up(self, limit: int = 5000, stop_at: int | None = None) -> int:
        """Project the next batch of notifications; returns how many were read (0: caught up)."""
        start = self.position
        if stop_at is not None and start >= stop_at:
            return 0
        # The head is read before the events: an event recorded between the two reads would
        # otherwise be skipped when the position moves to the head over events not projected.
        asked_at = time.monotonic()
        head = self.app.process_recorder.max_notification_id() or 0
        end = min(head, stop_at) if stop_at is not None else head
        if end <= start:
            self.caught_up_at = time.monotonic()
            return 0
        rows_read = self.plain.rows(self.app.process_recorder, start + 1, limit, end, TOPICS)
        if not rows_read:
            self.caught_up_at = time.monotonic()
            self._write(Rows(self._load), end)  # no projected event up to the head: move over them
            return 0
        rows = Rows(self._load)
        event = self.plain.event
        events = [event(topic, row_id, version, state) for _, row_id, version, topic, state in rows_read]
        self._preload(rows, events)
        for (position, *_), e in zip(rows_read, events, strict=True):
            project(rows, e, position)
        # Fewer than `limit`: every event up to `end` was read (those of other topics need no row),
        # so the position moves to `end`, and, `end` being the head, the read models were at the
        # head as it was when asked: under a steady flow a catch-up seldom finds nothing left.
        whole = len(rows_read) < limit
        if self._write(rows, end if whole else rows_read[-1][0]) and whole and end == head:
            self.caught_up_at = asked_at
        return len(rows_read)

    def run_to_end(self, stop_at: int | None = None, page: int = 5000) -> int:
        total = 0
        while True:
            read = self.catch_up(limit=page, stop_at=stop_at)
            if not read:
                return total
            total += read

    def _write(self, rows: Rows, position: int) -> bool:
        """Whether these rows and their position were written."""
        try:
            self.tables.write(rows.changed, Tracking(self.name, position))
            return True
        except IntegrityError:
            return False  # another process projected the same position first: its rows stand
        except OperationalError as error:
            # PostgreSQL broke a deadlock between processes projecting overlapping slices by
            # rolling this one back, or the database did not answer: the position did not move,
            # so the same slice is projected again on the next catch-up.
            log.warning("read_models.write_failed", position=position, error=str(error)[:300])
            return False

    def _preload(self, rows: Rows, events: list[Any]) -> None:
        """Read the existing rows a batch changes with one query per table, not one per row."""
        wanted: dict[str, set[str]] = {}
        for event in events:
            table = TABLE_OF.get(type(event))
            if table is not None:
                wanted.setdefault(table, set()).add(event.row_id)
        for table, ids in wanted.items():
            listed = sorted(ids)
            rows.preload(table, listed, {row_id: load(doc) for row_id, doc in self.tables.docs_of(table, listed)})

    def _load(self, table: str, row_id: str) -> dict[str, Any] | None:
        found = self.tables.fetch(f"SELECT doc FROM {self.tables.table(table)} WHERE id = ?", [row_id])
        return load(found[0]["doc"]) if found else None
