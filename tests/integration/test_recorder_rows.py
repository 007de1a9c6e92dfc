"""What the process recorder writes and reads back, byte for byte, on both stores: PostgreSQL's
sends its lists in binary and its events as four arrays (`processor.store.postgres_recorder`),
so the awkward values (quotes, braces, backslashes, NUL bytes, versions past 2**31) are the ones
a text format would have had to escape."""

import json
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from processor.store.opening import open_store, store_env
from processor.store.stored_orders import StoredOrders
from projections.projection import read_models

AWKWARD_TEXT = ['plain', 'with "quotes"', "with {braces}, and a comma", "back\\slash", "NULL", "", " spaced ",
                "non-ascii: ü €"]


def test_events_go_in_and_come_back_as_they_were_in_their_order(store: str) -> None:
    app = open_store(store)
    try:
        recorder = app.recorder
        a, b = uuid4(), uuid4()
        events = [StoredEvent(originator_id=a, originator_version=v, topic=f"tests:Topic{i}.{t}", state=s)
                  for i, (v, t, s) in enumerate([
                      (1, "plain", b'{"a":1}'),
                      (2, 'with "quotes"', b"\x00\x01\xff binary \\x00 not text"),
                      (40_000, "with {braces}, and a comma", b""),
                      (3_000_000_000, "back\\slash", "non-ascii: ü €".encode()),
                  ])]
        events.append(StoredEvent(originator_id=b, originator_version=1, topic="tests:Other", state=b"{}"))
        before = recorder.max_notification_id() or 0
        ids = recorder.insert_events(events)
        assert ids == list(range(before + 1, before + 6))  # returned in the order given, one each
        read = recorder.select_notifications(start=before + 1, limit=10)
        assert [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in read] == [
            (i, e.originator_id, e.originator_version, e.topic, e.state) for i, e in zip(ids, events, strict=True)]
        by_aggregate = sorted(events, key=lambda e: (e.originator_id, e.originator_version))  # as events_of orders them
        assert [(e.originator_id, e.originator_version, e.topic, bytes(e.state)) for e in recorder.events_of([a, b])] == [
            (e.originator_id, e.originator_version, e.topic, e.state) for e in by_aggregate]
    finally:
        app.close()


def test_lists_of_ids_are_asked_for_as_they_are(store: str) -> None:
    app = open_store(store)
    try:
        recorder = app.recorder
        assert recorder.seen([]) == set() and recorder.traces_of([]) == {}
        assert recorder.existing([]) == set() and recorder.events_of([]) == []
        first = uuid4()
        recorder.insert_events([StoredEvent(originator_id=first, originator_version=1, topic="tests:T", state=b"{}")],
                               seen=[(m, f"orders:0:{i}") for i, m in enumerate(AWKWARD_TEXT)],
                               traces=[(m, f"00-{i:032x}-{i:016x}-01") for i, m in enumerate(AWKWARD_TEXT)])
        assert recorder.seen([*AWKWARD_TEXT, "never seen", '"plain"']) == set(AWKWARD_TEXT)
        assert recorder.traces_of(["with {braces}, and a comma", "never seen"]) == {
            "with {braces}, and a comma": f"00-{2:032x}-{2:016x}-01"}
        assert recorder.existing([first, uuid4()]) == {first}
    finally:
        app.close()


def test_a_commit_whose_position_does_not_move_forward_records_nothing(store: str) -> None:
    """PostgreSQL's commit reads every result at one sync (`PostgresSeenRecorder.insert_events`):
    a position that did not move still fails the whole transaction, as the library's does."""
    app = open_store(store)
    try:
        recorder = app.process_recorder
        first = uuid4()
        recorder.insert_events([StoredEvent(originator_id=first, originator_version=1, topic="tests:T", state=b"{}")],
                               tracking=Tracking("orders:0", 5), more_tracking=[Tracking("orders:1", 3)],
                               seen=[("m1", "orders:0:4")])
        head = recorder.max_notification_id()
        with pytest.raises(IntegrityError):
            recorder.insert_events([StoredEvent(originator_id=first, originator_version=2, topic="tests:T", state=b"{}")],
                                   tracking=Tracking("orders:0", 9),
                                   more_tracking=[Tracking("orders:1", 3), Tracking("orders:2", 1)],
                                   seen=[("m2", "orders:0:8")])
        assert recorder.max_notification_id() == head
        assert recorder.max_tracking_ids(["orders:0", "orders:1", "orders:2"]) == {"orders:0": 5, "orders:1": 3}
        assert recorder.seen(["m1", "m2"]) == {"m1"}
        # A poll's four reads together (`read_poll`) read what each alone reads.
        other = uuid4()
        reads = recorder.read_poll(["orders:0", "orders:2"], 1, 10, ["m1", "m2"], [first, other])
        assert reads.positions == {"orders:0": 5} and reads.seen == {"m1"} and reads.existing == {first}
        assert [(UUID(hex=r[1]), r[2], r[3], bytes(r[4])) for r in reads.rows] == [(first, 1, "tests:T", b"{}")]
        assert recorder.read_poll([], head + 1, 10, [], []) == ({}, [], set(), set())
    finally:
        app.close()


def test_a_follower_position_moves_forward_only_and_is_recorded_again_without_error(store: str) -> None:
    """`StoredOrders.insert_tracking_once` (the outbox's positions; one statement on PostgreSQL)."""
    app = open_store(store)
    try:
        recorder = app.process_recorder
        app.insert_tracking_once(Tracking("outbox.results", 5))
        app.insert_tracking_once(Tracking("outbox.results", 5))  # again, as after a lost answer
        app.insert_tracking_once(Tracking("outbox.results", 3))  # a former leader's late write
        assert recorder.max_tracking_id("outbox.results") == 5
        app.insert_tracking_once(Tracking("outbox.results", 9))
        assert recorder.max_tracking_ids(["outbox.results", "outbox.work"]) == {"outbox.results": 9}
    finally:
        app.close()


def test_read_model_rows_are_written_and_rewritten_as_they_are(store: str) -> None:
    """PostgreSQL's upsert sends a table's rows as one binary array a column: NULLs, every awkward
    text, U+0000 (PostgreSQL text cannot hold it: the column gets U+FFFD, the document keeps it)."""
    app = open_store(store)
    try:
        tables = read_models(app)
        rows = {f"row-{i}": {"customer_id": text, "partner_id": None if i % 2 else text, "distributor_id": None,
                             "doc": {"name": text, "n": i}} for i, text in enumerate([*AWKWARD_TEXT, "nul\x00inside"])}
        operations = {"op-1": {"operation_id": "op-1", "seq": 3_000_000_000, "pairing_latency_ms": None, "doc": {}},
                      "op-2": {"operation_id": "op-2", "seq": None, "pairing_latency_ms": None, "doc": {"x": None}}}
        tables.write({"customers": rows, "operations": operations}, Tracking("rm.test", 1))
        rows["row-0"] = {"customer_id": "changed", "partner_id": "p", "distributor_id": "d", "doc": {"name": "changed"}}
        tables.write({"customers": {"row-0": rows["row-0"]}}, Tracking("rm.test", 2))  # an upsert of one row
        found = {r["id"]: r for r in tables.fetch(f"SELECT * FROM {tables.table('customers')}")}
        assert set(found) == set(rows)
        for row_id, row in rows.items():
            expected = {c: (v.replace("\x00", "\ufffd") if isinstance(v, str) else v) for c, v in row.items() if c != "doc"}
            assert {c: found[row_id][c] for c in expected} == expected
            assert json.loads(found[row_id]["doc"]) == row["doc"]
        seqs = {r["id"]: (r["seq"], r["pairing_latency_ms"]) for r in tables.fetch(f"SELECT * FROM {tables.table('operations')}")}
        assert seqs == {"op-1": (3_000_000_000, None), "op-2": (None, None)}
        assert tables.max_tracking_id("rm.test") == 2
    finally:
        app.close()


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_reads_on_postgresql_keep_the_statements_prepared_on_their_connection(store: str) -> None:
    """A read in a transaction rolled back made psycopg forget every statement prepared on the
    connection (`DEALLOCATE ALL`, a round trip more): reads run as autocommit statements, as the
    library's own, and what was prepared stays (`processor.store.factories._ReadingDatastore`)."""
    open_store(store).close()  # the schema and tables
    app = StoredOrders(env={**store_env(store), "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
    try:
        recorder = app.recorder
        for _ in range(8):  # psycopg prepares a statement from its fifth execution on
            recorder.seen(["m-1"])
            recorder.existing([uuid4()])
        with recorder.datastore.get_connection() as conn:  # the pool's one connection
            prepared = [r["statement"] for r in conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
            assert conn.execute("SELECT 1").fetchone() is not None and conn.autocommit
        assert any("coterm_seen_messages" in s for s in prepared), prepared
        assert any("originator_version = 1" in s for s in prepared), prepared
        with recorder.datastore.transaction(commit=True) as cursor:  # a write is still one transaction
            cursor.execute("CREATE TEMP TABLE probe (x int)")
            cursor.execute("INSERT INTO probe VALUES (1)")
            assert cursor.connection.info.transaction_status != 0  # IDLE: 0; in a transaction: 2
    finally:
        app.close()
