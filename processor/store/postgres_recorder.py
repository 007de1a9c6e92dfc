"""coterm's process recorder on PostgreSQL: the library's, plus what `recorders` adds on SQLite
(seen message ids, traces, batched existence checks and loads), the lease fence, and parameters
sent in binary.

Binary: psycopg writes a list parameter in the text format in Python, escaping each element
with a regular expression: 3.6-3.8 µs an element for text and UUIDs against 0.5-0.6 µs in the
binary format. The library's own insert sends a batch's events as one array of a composite
type, written as text: 46-49 µs an event, against 2.4-3.4 µs for four arrays of plain types in
binary (`psycopg._queries.PostgresQuery.convert`, a batch of 400 events of 300 bytes). A
transfer writes six events and names a dozen ids in such lists.
"""

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from processor.store.recorders import (LEASES, LEGACY_TOPIC, MIGRATED, TABLE, TRACES, Fenced, PollReads, latest_of,
                                       more_tracking, seen_rows, trace_rows)


class PostgresSeenRecorder(PostgresProcessRecorder):
    positions_together = True  # several positions in one commit (`more_tracking`)

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.seen_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(TABLE))
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {} (message_id TEXT PRIMARY KEY, position TEXT)").format(self.seen_table))
        self.traces_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(TRACES))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (message_id TEXT PRIMARY KEY, traceparent TEXT NOT NULL)").format(self.traces_table))
        self.insert_traces_statement = SQL("INSERT INTO {} (message_id, traceparent) SELECT * FROM unnest(%b::text[], "
                                           "%b::text[]) ON CONFLICT DO NOTHING").format(self.traces_table)
        self.select_traces_statement = SQL("SELECT message_id, traceparent FROM {} WHERE message_id = ANY(%b)").format(
            self.traces_table)
        self.leases_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(LEASES))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL, "
            "expires_at TIMESTAMPTZ NOT NULL)").format(self.leases_table))
        # FOR SHARE: a takeover (an UPDATE of the row) waits until this transaction ends, so
        # what a leader recorded under its lease is in the log before the next leader reads it.
        self.fence_statement = SQL("SELECT epoch FROM {} WHERE name = %s AND holder = %s AND epoch = %s "
                                   "AND expires_at > now() FOR SHARE").format(self.leases_table)
        # A batch's ids in one statement (two binary arrays), not one each: psycopg's `executemany`
        # spent about 20 µs of Python a row, this about 2. An id seen before fails it as it failed those.
        self.insert_seen_statement = SQL("INSERT INTO {} (message_id, position) SELECT * FROM unnest(%b::text[], "
                                         "%b::text[])").format(self.seen_table)
        self.max_tracking_ids_statement = SQL(
            "SELECT application_name, MAX(notification_id) AS max FROM {}.{} WHERE application_name = ANY(%s) "
            "GROUP BY application_name").format(Identifier(self.datastore.schema), Identifier(self.tracking_table_name))
        self.move_position_statement = SQL(
            "INSERT INTO {0}.{1} (application_name, notification_id) VALUES (%s, %s) ON CONFLICT (application_name) "
            "DO UPDATE SET notification_id = GREATEST({0}.{1}.notification_id, EXCLUDED.notification_id)").format(
                Identifier(self.datastore.schema), Identifier(self.tracking_table_name))
        self.select_seen_statement = SQL("SELECT message_id FROM {} WHERE message_id = ANY(%b)").format(self.seen_table)
        self.select_existing_statement = SQL(
            "SELECT originator_id FROM {}.{} WHERE originator_version = 1 AND originator_id = ANY(%b)").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name))
        # The library's insert of a batch's events, sent as four arrays of plain types in binary
        # instead of one array of its composite type (this module's docstring): the same rows in
        # the same order, their notification ids returned in that order.
        self.insert_columns_statement = SQL(
            "INSERT INTO {}.{} AS t (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{}[], %b::bigint[], %b::text[], %b::bytea[]) RETURNING notification_id").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name),
                SQL(self.datastore.originator_id_type))

    @property
    def select_rows_statement(self) -> Any:
        return SQL("SELECT notification_id, replace(originator_id::text, '-', ''), originator_version, topic, state "
                   "FROM {}.{} WHERE notification_id >= %s AND notification_id <= %s AND (topic = ANY(%s) OR %s) "
                   "ORDER BY notification_id LIMIT %s").format(
                       Identifier(self.datastore.schema), Identifier(self.events_table_name))

    def select_rows_by_aggregate_statement(self, among_topics: bool) -> Any:
        among = "AND topic = ANY(%s) " if among_topics else ""
        return SQL("SELECT notification_id, replace(originator_id::text, '-', ''), originator_version, topic, state "
                   "FROM {}.{} WHERE (originator_id, originator_version) > (%s, %s) AND originator_id <= %s "
                   f"AND notification_id <= %s {among}ORDER BY originator_id, originator_version LIMIT %s"
                   ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))

    @property
    def select_events_of_statement(self) -> Any:
        return SQL("SELECT originator_id, originator_version, topic, state FROM {}.{} WHERE originator_id = ANY(%b) "
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

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """The library's insert (`PostgresApplicationRecorder.insert_events` with the process
        recorder's position) in two round trips, whatever the commit carries: every statement goes
        out in one pipeline and every result comes back at one sync before the COMMIT. The lease
        fence and each position are checked there, and a failed check raises inside the
        transaction, which rolls it back. The library reads the fence's and each position's
        result as it goes, a round trip each: five for a consumer's poll of three partitions.
        The table's lock is the library's; its NOTIFY is not sent: nothing here LISTENs (readers
        follow the log by position), and a notifying commit takes one more lock."""
        positions = [t for t in (kwargs.get("tracking"), *more_tracking(kwargs)) if t is not None]
        with self.datastore.get_connection() as conn, conn.pipeline() as pipeline, conn.transaction():
            fence = kwargs.get("fence")
            fenced = conn.cursor()
            if fence is not None:
                fenced.execute(self.fence_statement, tuple(fence))
            moved = [self._send_position(conn, tracking) for tracking in positions]
            rows, traces = seen_rows(kwargs), trace_rows(kwargs)
            if rows:
                conn.cursor().execute(self.insert_seen_statement, ([r[0] for r in rows], [r[1] for r in rows]))
            if traces:
                conn.cursor().execute(self.insert_traces_statement, ([t[0] for t in traces], [t[1] for t in traces]))
            inserted = conn.cursor()
            if stored_events:
                self._lock_table(inserted)
                inserted.execute(self.insert_columns_statement, (
                    [e.originator_id for e in stored_events], [e.originator_version for e in stored_events],
                    [e.topic for e in stored_events], [e.state for e in stored_events]))
            pipeline.sync()  # a version conflict or an id seen before raises here
            if fence is not None and fenced.fetchone() is None:
                raise Fenced(f"lease {fence.name} epoch {fence.epoch} is no longer held by {fence.holder}")
            for tracking, cursor in moved:
                if cursor is not None and cursor.fetchone() is None:
                    raise IntegrityError(f"Failed to record tracking for {tracking.application_name} "
                                         f"{tracking.notification_id}")
            return [row["notification_id"] for row in inserted.fetchall()] if stored_events else None

    def move_position(self, tracking: Tracking) -> bool:
        """Record a follower's position unless one as far or further is there: one autocommit
        statement (the library's `insert_tracking` is BEGIN, the upsert, COMMIT: three round trips,
        and one more to read the position when it failed). False on the library's legacy table of
        many rows a position, which this statement does not fit."""
        if not self.datastore.single_row_tracking:
            return False
        with self.datastore.get_connection() as conn:
            conn.execute(self.move_position_statement, (tracking.application_name, tracking.notification_id), prepare=True)
        return True

    def _send_position(self, conn: Any, tracking: Tracking) -> tuple[Tracking, Any]:
        """A position's upsert, sent; its cursor to read the result from (None: the library's
        legacy table of many rows a position, where a position recorded before fails the insert)."""
        cursor = conn.cursor()
        self._check_has_multi_row_tracking_table(cursor)
        cursor.execute(self.insert_tracking_statement, {"application_name": tracking.application_name,
                                                        "notification_id": tracking.notification_id}, prepare=True)
        return tracking, cursor if self.datastore.single_row_tracking else None

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
        among: tuple[Any, ...] = (list(topics),) if topics else ()
        params = (UUID(hex=after[0].ljust(32, "0")), after[1], UUID(int=last), stop, *among, limit)
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as curs:
            # The planner, misjudging how many events the topics keep, would read every event of
            # the range and sort them for each page (a bitmap scan): the key's own order instead.
            curs.execute("SET LOCAL enable_bitmapscan = off")
            curs.execute("SET LOCAL enable_sort = off")
            curs.execute(self.select_rows_by_aggregate_statement(bool(topics)), params, prepare=True)
            return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in curs.fetchall()]

    def seen(self, message_ids: Iterable[str]) -> set[str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_seen_statement, (list(message_ids),), prepare=True)
            return {row["message_id"] for row in curs.fetchall()}

    def max_tracking_ids(self, names: Iterable[str]) -> dict[str, int]:
        """As `SQLiteSeenRecorder.max_tracking_ids`."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.max_tracking_ids_statement, (list(names),), prepare=True)
            return {row["application_name"]: row["max"] for row in curs.fetchall()}

    def read_poll(self, names: Sequence[str], start: int, page: int, message_ids: Sequence[str],
                  aggregate_ids: Sequence[UUID]) -> PollReads:
        """As `SQLiteSeenRecorder.read_poll`: the four statements sent together in a pipeline, so
        one round trip instead of four (each is an autocommit read, as each was alone)."""
        with self.datastore.get_connection() as conn, conn.pipeline() as pipeline:
            positions, rows, seen, existing = (conn.cursor(row_factory=tuple_row) for _ in range(4))
            positions.execute(self.max_tracking_ids_statement, (list(names),), prepare=True)
            rows.execute(self.select_rows_statement, (start, 2**62, [], True, page), prepare=True)
            if message_ids:
                seen.execute(self.select_seen_statement, (list(message_ids),), prepare=True)
            if aggregate_ids:
                existing.execute(self.select_existing_statement, (list(aggregate_ids),), prepare=True)
            pipeline.sync()
            return PollReads(dict(positions.fetchall()), [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows.fetchall()],
                             {r[0] for r in seen.fetchall()} if message_ids else set(),
                             {r[0] for r in existing.fetchall()} if aggregate_ids else set())

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
                curs.execute(latest_of(f"{schema}.{Identifier(self.events_table_name).as_string(None)}",
                                        f"{schema}.{Identifier(snapshots).as_string(None)}", "= ANY(%b)"),
                             (ids, ids), prepare=True)
            return [StoredEvent(originator_id=r["originator_id"], originator_version=r["originator_version"],
                                topic=r["topic"], state=bytes(r["state"])) for r in curs.fetchall()]
