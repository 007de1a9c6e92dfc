"""coterm's process recorders: the library's, plus seen message ids and batched existence checks
(PostgreSQL's is in `postgres_recorder`).

Existence: a batch of orders names many aggregates that may not exist yet (a new transfer,
a new target subscription). The library's repository answers "not found" with one query
each; `existing()` answers for the whole batch in one query.

Seen messages:

Deduplicating by `message_id` needs a fact per message, not an aggregate per message: a
row written in the same transaction as the events the message caused and its Kafka
position. A message id already present fails that transaction (an `IntegrityError`,
like a version conflict), so two processors racing on one id cannot both apply it.

Stores written before this table existed hold an `InboundMessage` aggregate per message:
their ids are copied into the table once, when it is created.
"""

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

TABLE = "coterm_seen_messages"
LEASES = "coterm_leases"
TRACES = "coterm_message_traces"  # an applied message's trace context, while tracing is on (`processor.tracing`)
SELECT_SEEN = f"SELECT message_id FROM {TABLE} WHERE message_id IN"
SELECT_POSITIONS = "SELECT application_name, MAX(notification_id) FROM tracking WHERE application_name IN"
LEGACY_TOPIC = "aggregates.inbox:InboundMessage.Received"
MIGRATED = "coterm.seen_messages.v1"  # a tracking record: the legacy ids were copied


def latest_of(events: str, snapshots: str, among: str) -> str:
    """Each aggregate's latest snapshot (if any) and its events after it, for the aggregates
    whose id is `among` (`IN (...)` or `= ANY(...)`, its ids given twice): one statement, so
    one consistent read even while snapshots are being written."""
    latest = f"(SELECT MAX(t.originator_version) FROM {snapshots} t WHERE t.originator_id = x.originator_id)"
    return (f"SELECT originator_id, originator_version, topic, state FROM {snapshots} x "
            f"WHERE originator_id {among} AND originator_version = {latest} UNION ALL "
            f"SELECT originator_id, originator_version, topic, state FROM {events} x "
            f"WHERE originator_id {among} AND originator_version > COALESCE({latest}, 0) ORDER BY 1, 2")


class Fenced(RuntimeError):
    """The lease a write was made under is no longer held: another instance leads now."""


class Fence(NamedTuple):
    """A lease a transaction must find held, in the same transaction (PostgreSQL only: a SQLite
    store has one processor)."""

    name: str
    holder: str
    epoch: int


class PollReads(NamedTuple):
    """What applying a poll reads before it writes, asked together (`read_poll`)."""

    positions: dict[str, int]  # each position name's recorded position; a name never recorded is absent
    rows: list[tuple[int, str, int, str, bytes]]  # the log from a position on, as `select_rows` gives it
    seen: set[str]  # the message ids recorded already
    existing: set[UUID]  # the aggregates with a first event


def seen_rows(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The (message_id, position) pairs a commit carries (`Orders.commit(..., seen=...)`)."""
    return list(kwargs.get("seen") or ())


def more_tracking(kwargs: dict[str, Any]) -> list[Tracking]:
    """The positions after the first a commit carries (`Orders.commit` with several, one a
    partition of a poll): each is a tracking record of its own, checked as the library checks
    the first (a position must move forward, or the transaction fails as a conflict)."""
    return list(kwargs.get("more_tracking") or ())


def trace_rows(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The (message_id, traceparent) pairs a commit carries (`Orders.commit(..., traces=...)`)."""
    return list(kwargs.get("traces") or ())


class SQLiteSeenRecorder(SQLiteProcessRecorder):
    positions_together = True  # several positions in one commit (`more_tracking`)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                f"CREATE TABLE IF NOT EXISTS {TABLE} (message_id TEXT PRIMARY KEY, position TEXT) WITHOUT ROWID",
                f"CREATE TABLE IF NOT EXISTS {TRACES} (message_id TEXT PRIMARY KEY, traceparent TEXT NOT NULL) WITHOUT ROWID"]

    def create_table(self) -> None:
        super().create_table()
        if self.max_tracking_id(MIGRATED) is None:
            with self.datastore.transaction(commit=True) as c:
                c.execute(f"INSERT OR IGNORE INTO {TABLE} SELECT json_extract(CAST(state AS TEXT), '$.message_id'), "
                          f"'legacy' FROM {self.events_table_name} WHERE topic = ?", (LEGACY_TOPIC,))
                self._insert_tracking(c, Tracking(MIGRATED, 1))

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        rows = seen_rows(kwargs)
        if rows:
            c.executemany(f"INSERT INTO {TABLE} (message_id, position) VALUES (?, ?)", rows)
        traces = trace_rows(kwargs)
        if traces:
            c.executemany(f"INSERT OR IGNORE INTO {TRACES} (message_id, traceparent) VALUES (?, ?)", traces)
        for tracking in more_tracking(kwargs):
            self._insert_tracking(c, tracking)
        return super()._insert_events(c, stored_events, **kwargs)

    def seen(self, message_ids: Iterable[str]) -> set[str]:
        return {r[0] for r in self._select_in(SELECT_SEEN, list(message_ids))}

    def max_tracking_ids(self, names: Iterable[str]) -> dict[str, int]:
        """`max_tracking_id` of several positions (a poll's partitions) in one query; a name
        never recorded is absent."""
        return dict(self._select_in(SELECT_POSITIONS, list(names), then=" GROUP BY application_name"))

    def read_poll(self, names: Sequence[str], start: int, page: int, message_ids: Sequence[str],
                  aggregate_ids: Sequence[UUID]) -> PollReads:
        """`max_tracking_ids`, `select_rows` (every topic), `seen` and `existing` in one read
        transaction: one snapshot, and a transaction a poll instead of four."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None  # tuples, not `sqlite3.Row`s
            positions = dict(self._select_in_with(c, SELECT_POSITIONS, list(names), then=" GROUP BY application_name"))
            c.execute(self._select_rows_statement(()), [start, 2**62, page])
            rows = c.fetchall()
            seen = {r[0] for r in self._select_in_with(c, SELECT_SEEN, list(message_ids))}
            existing = self._select_in_with(c, self._select_existing, [i.hex for i in aggregate_ids])
        return PollReads(positions, rows, seen, {UUID(hex=r[0]) for r in existing})

    def traces_of(self, message_ids: Iterable[str]) -> dict[str, str]:
        return dict(self._select_in(f"SELECT message_id, traceparent FROM {TRACES} WHERE message_id IN", list(message_ids)))

    @property
    def _select_existing(self) -> str:
        return f"SELECT originator_id FROM {self.events_table_name} WHERE originator_version = 1 AND originator_id IN"

    def existing(self, aggregate_ids: Iterable[UUID]) -> set[UUID]:
        return {UUID(hex=r[0]) for r in self._select_in(self._select_existing, [i.hex for i in aggregate_ids])}

    def events_of(self, aggregate_ids: Iterable[UUID], snapshots: str | None = None) -> list[StoredEvent]:
        """What rebuilds these aggregates, in version order per aggregate: one query per 500
        aggregates (400 with `snapshots`) instead of two each (`UnitOfWork.load_many`).
        `snapshots`: the snapshots table; then each aggregate's latest snapshot and the events
        after it, else every event."""
        ids = [i.hex for i in aggregate_ids]
        if snapshots is None:
            rows = self._select_in(f"SELECT originator_id, originator_version, topic, state FROM {self.events_table_name} "
                                   "WHERE originator_id IN", ids, then=" ORDER BY originator_id, originator_version")
        else:
            rows = []
            with self.datastore.transaction(commit=False) as c:
                c.sqlite_cursor.row_factory = None  # tuples, not `sqlite3.Row`s
                for i in range(0, len(ids), 400):  # twice as many parameters as ids
                    part = ids[i : i + 400]
                    c.execute(latest_of(self.events_table_name, snapshots, "IN (" + ",".join("?" * len(part)) + ")"),
                              part + part)
                    rows.extend(c.fetchall())
        return [StoredEvent(originator_id=UUID(hex=r[0]), originator_version=r[1], topic=r[2], state=r[3]) for r in rows]

    def select_rows(self, start: int, limit: int, stop: int | None,
                    topics: Sequence[str]) -> list[tuple[int, str, int, str, bytes]]:
        """`select_notifications` as plain tuples (position, aggregate id in hex, version, topic,
        state): what the read models take (`projections.plain_events`), without a `Notification`
        and a `UUID` made per row only to be taken apart again."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None  # tuples, not `sqlite3.Row`s
            c.execute(self._select_rows_statement(topics), [start, stop if stop is not None else 2**62, *topics, limit])
            return c.fetchall()  # type: ignore[no-any-return]

    def _select_rows_statement(self, topics: Sequence[str]) -> str:
        among = f"AND topic IN ({','.join('?' * len(topics))}) " if topics else ""  # no topics: every event
        return (f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                f"WHERE rowid >= ? AND rowid <= ? {among}ORDER BY rowid LIMIT ?")

    def select_rows_by_aggregate(self, after: tuple[str, int], below: str | None, stop: int, topics: Sequence[str],
                                 limit: int) -> list[tuple[int, str, int, str, bytes]]:
        """As `select_rows`, in aggregate order: the events after (aggregate id, version) of the
        aggregates below `below` (hex ids), at positions up to `stop` (`projections.rebuild`).
        No topics: every event (a rebuild, which projects nearly all, filters faster itself)."""
        among = f"AND topic IN ({','.join('?' * len(topics))}) " if topics else ""
        statement = (f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                     "WHERE (originator_id, originator_version) > (?, ?) AND originator_id < ? AND rowid <= ? "
                     f"{among}ORDER BY originator_id, originator_version LIMIT ?")
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(statement, [*after, below or "g", stop, *topics, limit])  # "g" sorts after every hex id
            return c.fetchall()  # type: ignore[no-any-return]

    def _select_in(self, statement: str, values: list[str], then: str = "", chunk: int = 500) -> list[Any]:
        """The rows of `statement` IN (values) `then`, asked `chunk` values at a time (SQLite
        caps the number of parameters in one statement)."""
        with self.datastore.transaction(commit=False) as c:
            return self._select_in_with(c, statement, values, then, chunk)

    @staticmethod
    def _select_in_with(c: Any, statement: str, values: list[str], then: str = "", chunk: int = 500) -> list[Any]:
        found: list[Any] = []
        for i in range(0, len(values), chunk):
            part = values[i : i + chunk]
            c.execute(f"{statement} ({','.join('?' * len(part))}){then}", part)
            found.extend(c.fetchall())
        return found


class POPOSeenRecorder(POPOProcessRecorder):
    """In memory, for unit tests."""

    positions_together = True

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, str] = {}
        self._traces: dict[str, str] = {}

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        rows = seen_rows(kwargs)
        ids = [message_id for message_id, _ in rows]
        if len(set(ids)) != len(ids) or any(i in self._seen for i in ids):
            raise IntegrityError("message id already seen")
        for tracking in more_tracking(kwargs):
            self._assert_tracking_uniqueness(tracking)

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        ids = super()._update_table(stored_events, **kwargs)
        self._seen.update(seen_rows(kwargs))
        for tracking in more_tracking(kwargs):
            self._insert_tracking(tracking)
        for message_id, traceparent in trace_rows(kwargs):
            self._traces.setdefault(message_id, traceparent)
        return ids

    def max_tracking_ids(self, names: Iterable[str]) -> dict[str, int]:
        with self._database_lock:
            found = {name: self._max_tracking_ids[name] for name in names}
        return {name: i for name, i in found.items() if i is not None}

    def traces_of(self, message_ids: Iterable[str]) -> dict[str, str]:
        with self._database_lock:
            return {i: self._traces[i] for i in message_ids if i in self._traces}

    def seen(self, message_ids: Iterable[str]) -> set[str]:
        with self._database_lock:
            return {i for i in message_ids if i in self._seen}

    def existing(self, aggregate_ids: Iterable[UUID]) -> set[UUID]:
        with self._database_lock:
            return {i for i in aggregate_ids if 1 in self._stored_events_index.get(str(i), {})}

    def events_of(self, aggregate_ids: Iterable[UUID], snapshots: str | None = None) -> list[StoredEvent]:
        return [e for i in aggregate_ids for e in self.select_events(i)]

    def select_rows(self, start: int, limit: int, stop: int | None,
                    topics: Sequence[str]) -> list[tuple[int, str, int, str, bytes]]:
        """As `SQLiteSeenRecorder.select_rows`."""
        return [(n.id, n.originator_id.hex, n.originator_version, n.topic, n.state)
                for n in self.select_notifications(start=start, limit=limit, stop=stop, topics=topics)]
