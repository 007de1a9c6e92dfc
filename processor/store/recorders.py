"""coterm's process recorders: the library's, plus seen message ids and batched existence checks.

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
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

TABLE = "coterm_seen_messages"
LEASES = "coterm_leases"
TRACES = "coterm_message_traces"  # an applied message's trace context, while tracing is on (`processor.tracing`)
LEGACY_TOPIC = "aggregates.inbox:InboundMessage.Received"
MIGRATED = "coterm.seen_messages.v1"  # a tracking record: the legacy ids were copied


def _latest_of(events: str, snapshots: str, among: str) -> str:
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


def seen_rows(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The (message_id, position) pairs a commit carries (`Orders.commit(..., seen=...)`)."""
    return list(kwargs.get("seen") or ())


def trace_rows(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The (message_id, traceparent) pairs a commit carries (`Orders.commit(..., traces=...)`)."""
    return list(kwargs.get("traces") or ())


class SQLiteSeenRecorder(SQLiteProcessRecorder):
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
        return super()._insert_events(c, stored_events, **kwargs)

    def seen(self, message_ids: Iterable[str]) -> set[str]:
        return {r[0] for r in self._select_in(f"SELECT message_id FROM {TABLE} WHERE message_id IN", list(message_ids))}

    def traces_of(self, message_ids: Iterable[str]) -> dict[str, str]:
        return dict(self._select_in(f"SELECT message_id, traceparent FROM {TRACES} WHERE message_id IN", list(message_ids)))

    def existing(self, aggregate_ids: Iterable[UUID]) -> set[UUID]:
        found = self._select_in(f"SELECT originator_id FROM {self.events_table_name} WHERE originator_version = 1 "
                                "AND originator_id IN", [i.hex for i in aggregate_ids])
        return {UUID(hex=r[0]) for r in found}

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
                    c.execute(_latest_of(self.events_table_name, snapshots, "IN (" + ",".join("?" * len(part)) + ")"),
                              part + part)
                    rows.extend(c.fetchall())
        return [StoredEvent(originator_id=UUID(hex=r[0]), originator_version=r[1], topic=r[2], state=r[3]) for r in rows]

    def select_rows(self, start: int, limit: int, stop: int | None,
                    topics: Sequence[str]) -> list[tuple[int, str, int, str, bytes]]:
        """`select_notifications` as plain tuples (position, aggregate id in hex, version, topic,
        state): what the read models take (`projections.plain_events`), without a `Notification`
        and a `UUID` made per row only to be taken apart again."""
        among = f"AND topic IN ({','.join('?' * len(topics))}) " if topics else ""  # no topics: every event
        statement = (f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                     f"WHERE rowid >= ? AND rowid <= ? {among}ORDER BY rowid LIMIT ?")
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None  # tuples, not `sqlite3.Row`s
            c.execute(statement, [start, stop if stop is not None else 2**62, *topics, limit])
            return c.fetchall()  # type: ignore[no-any-return]

    def select_rows_by_aggregate(self, after: tuple[str, int], below: str | None, stop: int, topics: Sequence[str],
                                 limit: int) -> list[tuple[int, str, int, str, bytes]]:
        """As `select_rows`, in aggregate order: the events after (aggregate id, version) of the
        aggregates below `below` (hex ids), at positions up to `stop` (`projections.rebuild`)."""
        statement = (f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                     "WHERE (originator_id, originator_version) > (?, ?) AND originator_id < ? AND rowid <= ? "
                     f"AND topic IN ({','.join('?' * len(topics))}) ORDER BY originator_id, originator_version LIMIT ?")
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(statement, [*after, below or "g", stop, *topics, limit])  # "g" sorts after every hex id
            return c.fetchall()  # type: ignore[no-any-return]

    def _select_in(self, statement: str, values: list[str], then: str = "", chunk: int = 500) -> list[Any]:
        """The rows of `statement` IN (values) `then`, asked `chunk` values at a time (SQLite
        caps the number of parameters in one statement)."""
        found: list[Any] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(values), chunk):
                part = values[i : i + chunk]
                c.execute(f"{statement} ({','.join('?' * len(part))}){then}", part)
                found.extend(c.fetchall())
        return found


class PostgresSeenRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.seen_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(TABLE))
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {} (message_id TEXT PRIMARY KEY, position TEXT)").format(self.seen_table))
        self.traces_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(TRACES))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (message_id TEXT PRIMARY KEY, traceparent TEXT NOT NULL)").format(self.traces_table))
        self.insert_traces_statement = SQL("INSERT INTO {} (message_id, traceparent) VALUES (%s, %s) "
                                           "ON CONFLICT DO NOTHING").format(self.traces_table)
        self.select_traces_statement = SQL("SELECT message_id, traceparent FROM {} WHERE message_id = ANY(%s)").format(
            self.traces_table)
        self.leases_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(LEASES))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL, "
            "expires_at TIMESTAMPTZ NOT NULL)").format(self.leases_table))
        # FOR SHARE: a takeover (an UPDATE of the row) waits until this transaction ends, so
        # what a leader recorded under its lease is in the log before the next leader reads it.
        self.fence_statement = SQL("SELECT epoch FROM {} WHERE name = %s AND holder = %s AND epoch = %s "
                                   "AND expires_at > now() FOR SHARE").format(self.leases_table)
        self.insert_seen_statement = SQL("INSERT INTO {} (message_id, position) VALUES (%s, %s)").format(self.seen_table)
        self.select_seen_statement = SQL("SELECT message_id FROM {} WHERE message_id = ANY(%s)").format(self.seen_table)
        self.select_existing_statement = SQL(
            "SELECT originator_id FROM {}.{} WHERE originator_version = 1 AND originator_id = ANY(%s)").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name))

    @property
    def select_rows_statement(self) -> Any:
        return SQL("SELECT notification_id, replace(originator_id::text, '-', ''), originator_version, topic, state "
                   "FROM {}.{} WHERE notification_id >= %s AND notification_id <= %s AND (topic = ANY(%s) OR %s) "
                   "ORDER BY notification_id LIMIT %s").format(
                       Identifier(self.datastore.schema), Identifier(self.events_table_name))

    @property
    def select_rows_by_aggregate_statement(self) -> Any:
        return SQL("SELECT notification_id, replace(originator_id::text, '-', ''), originator_version, topic, state "
                   "FROM {}.{} WHERE (originator_id, originator_version) > (%s, %s) AND originator_id <= %s "
                   "AND notification_id <= %s AND topic = ANY(%s) ORDER BY originator_id, originator_version LIMIT %s"
                   ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))

    @property
    def select_events_of_statement(self) -> Any:
        return SQL("SELECT originator_id, originator_version, topic, state FROM {}.{} WHERE originator_id = ANY(%s) "
                   "ORDER BY originator_id, originator_version").format(
                       Identifier(self.datastore.schema), Identifier(self.events_table_name))

    def create_table(self) -> None:
        super().create_table()
        if self.max_tracking_id(MIGRATED) is None:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(SQL(
                    "INSERT INTO {} SELECT convert_from(state, 'UTF8')::jsonb->>'message_id', 'legacy' FROM {}.{} "
                    "WHERE topic = %s ON CONFLICT DO NOTHING").format(
                        self.seen_table, Identifier(self.datastore.schema), Identifier(self.events_table_name)),
                    (LEGACY_TOPIC,))
                self._insert_tracking(curs, Tracking(MIGRATED, 1))

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        fence = kwargs.get("fence")
        if fence is not None:
            with curs.connection.cursor() as check:
                check.execute(self.fence_statement, tuple(fence))
                if check.fetchone() is None:
                    raise Fenced(f"lease {fence.name} epoch {fence.epoch} is no longer held by {fence.holder}")
        super()._insert_events(curs, stored_events, **kwargs)  # the tracking record, which reads its result
        rows = seen_rows(kwargs)
        if rows:
            # A cursor of its own: in pipeline mode a result read on a cursor that also ran this
            # INSERT can be the INSERT's ("the last operation didn't produce records").
            with curs.connection.cursor() as seen:
                seen.executemany(self.insert_seen_statement, rows)
        traces = trace_rows(kwargs)
        if traces:
            with curs.connection.cursor() as traced:
                traced.executemany(self.insert_traces_statement, traces)

    def select_rows(self, start: int, limit: int, stop: int | None,
                    topics: Sequence[str]) -> list[tuple[int, str, int, str, bytes]]:
        """As `SQLiteSeenRecorder.select_rows`: the library's selection, as plain tuples."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.select_rows_statement, (start, stop if stop is not None else 2**62, list(topics),
                                                      not topics, limit), prepare=True)
            return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in curs.fetchall()]

    def select_rows_by_aggregate(self, after: tuple[str, int], below: str | None, stop: int, topics: Sequence[str],
                                 limit: int) -> list[tuple[int, str, int, str, bytes]]:
        """As `SQLiteSeenRecorder.select_rows_by_aggregate`."""
        last = int(below, 16) - 1 if below else 2**128 - 1  # the highest id in range: `<=` keeps to the index
        params = (UUID(hex=after[0].ljust(32, "0")), after[1], UUID(int=last), stop, list(topics), limit)
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as curs:
            # The planner, misjudging how many events the topics keep, would read every event of
            # the range and sort them for each page (a bitmap scan): the key's own order instead.
            curs.execute("SET LOCAL enable_bitmapscan = off")
            curs.execute("SET LOCAL enable_sort = off")
            curs.execute(self.select_rows_by_aggregate_statement, params, prepare=True)
            return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in curs.fetchall()]

    def seen(self, message_ids: Iterable[str]) -> set[str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_seen_statement, (list(message_ids),), prepare=True)
            return {row["message_id"] for row in curs.fetchall()}

    def traces_of(self, message_ids: Iterable[str]) -> dict[str, str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_traces_statement, (list(message_ids),), prepare=True)
            return {row["message_id"]: row["traceparent"] for row in curs.fetchall()}

    def existing(self, aggregate_ids: Iterable[UUID]) -> set[UUID]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_existing_statement, (list(aggregate_ids),), prepare=True)
            return {row["originator_id"] for row in curs.fetchall()}

    def events_of(self, aggregate_ids: Iterable[UUID], snapshots: str | None = None) -> list[StoredEvent]:
        """As `SQLiteSeenRecorder.events_of`: one query for many aggregates."""
        ids = list(aggregate_ids)
        with self.datastore.transaction(commit=False) as curs:
            if snapshots is None:
                curs.execute(self.select_events_of_statement, (ids,), prepare=True)
            else:
                schema = Identifier(self.datastore.schema).as_string(None)
                curs.execute(_latest_of(f"{schema}.{Identifier(self.events_table_name).as_string(None)}",
                                        f"{schema}.{Identifier(snapshots).as_string(None)}", "= ANY(%s)"),
                             (ids, ids), prepare=True)
            return [StoredEvent(originator_id=r["originator_id"], originator_version=r["originator_version"],
                                topic=r["topic"], state=bytes(r["state"])) for r in curs.fetchall()]


class POPOSeenRecorder(POPOProcessRecorder):
    """In memory, for unit tests."""

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

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        ids = super()._update_table(stored_events, **kwargs)
        self._seen.update(seen_rows(kwargs))
        for message_id, traceparent in trace_rows(kwargs):
            self._traces.setdefault(message_id, traceparent)
        return ids

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
