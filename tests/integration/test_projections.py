"""Read models, one shared test case run against each store (as eventsourcing's own view tests do)."""

import json
import multiprocessing
import os
import queue
import sqlite3
import threading
import time

import psycopg
import pytest
from eventsourcing.persistence import Tracking

from aggregates import commands
from processor.outbox.process import SharedStatus
from processor.outbox.read_model_process import READ_MODEL_EVERY_S, KeptReadModels
from projections.audit import _rebuild_taken, _share_read, _taken, replay
from projections.projection import Projection
from tests import seed
from tests.waiting import wait_for


def seeded(app) -> None:  # type: ignore[no-untyped-def]
    seed.customer_with_subscriptions(app)
    for n, outcome in enumerate(seed.OUTCOMES):
        seed.operation(app, f"op-{n}-{outcome}", outcome)
    seed.run(app, commands.request_migration, "mig-1", "c1", ["p1", "nce"], "partner")


def docs(projection: Projection, table: str) -> dict[str, str]:
    rows = projection.tables.fetch(f"SELECT id, doc FROM {projection.tables.table(table)}")
    return {r["id"]: r["doc"] for r in rows}


class TestReadModels:
    def test_operations_carry_status_reason_halves_and_latency(self, app) -> None:  # type: ignore[no-untyped-def]
        seeded(app)
        projection = Projection(app)
        projection.run_to_end()
        ops = {json.loads(d)["operation_id"]: json.loads(d) for d in docs(projection, "operations").values()}
        assert {op: doc["status"] for op, doc in ops.items()} == {
            f"op-{n}-{outcome}": status for n, (outcome, status) in enumerate(seed.OUTCOMES.items())}
        done = ops["op-0-completed"]
        assert done["vendor_reference"] == "V-op-0-completed" and done["vendor_latency_ms"] == 120
        assert set(done["halves"]) == {"downgrade", "upgrade"} and done["pairing_latency_ms"] is not None
        assert ops["op-1-rejected"]["reason_code"] == "SEAT_COUNT_MISMATCH"
        assert ops["op-2-parked"]["retryable"] is True
        assert ops["op-5-expired"]["reason_code"] == "PAIRING_TIMEOUT"
        assert ops["op-6-cancelled"]["actions"][0]["by"] == "ops"

    def test_customers_show_subscriptions_migrations_and_renewal_windows(self, app) -> None:  # type: ignore[no-untyped-def]
        seeded(app)
        projection = Projection(app)
        projection.run_to_end()
        subs = {json.loads(d)["subscription_id"]: json.loads(d) for d in docs(projection, "subscriptions").values()}
        assert subs["c1-s1"]["seats"] == 99  # one seat moved out by the completed transfer
        assert subs["op-0-completed-new"]["seats"] == 1
        assert subs["c1-epp"]["renewal_window_opens"] == "2027-04-01"
        [migration] = [json.loads(d) for d in docs(projection, "migrations").values()]
        rejected = {r["product_id"]: r for r in migration["decisions"][0]["rejected"]}
        assert rejected["p1"]["reason_code"] == "NOT_IN_RENEWAL_WINDOW" and rejected["p1"]["eligible_from"] == "2027-04-01"
        assert rejected["nce"]["reason_code"] == "PRODUCT_NOT_SUPPORTED"

    def test_stopping_and_resuming_equals_one_run_and_never_counts_twice(self, app) -> None:  # type: ignore[no-untyped-def]
        seeded(app)
        stepwise = Projection(app)
        while stepwise.catch_up(limit=3):
            pass
        assert stepwise.catch_up() == 0  # caught up: a second pass changes nothing
        before = docs(stepwise, "operations")
        Projection(app).run_to_end()  # another runner over the same tables: no double counting
        assert docs(stepwise, "operations") == before
        assert replay(app, verify=True)["differences"] == []

    def test_dropped_read_models_rebuild_identically(self, app) -> None:  # type: ignore[no-untyped-def]
        seeded(app)
        first = Projection(app)
        first.run_to_end()
        snapshot = {t: docs(first, t) for t in ("operations", "customers", "subscriptions", "migrations")}
        first.tables.drop()
        rebuilt = Projection(app)
        assert rebuilt.position == 0
        rebuilt.run_to_end()
        assert {t: docs(rebuilt, t) for t in snapshot} == snapshot

    def test_replay_verify_names_a_tampered_row(self, app) -> None:  # type: ignore[no-untyped-def]
        seeded(app)
        live = Projection(app)
        live.run_to_end()
        table = live.tables.table("operations")
        with live.tables.datastore.transaction(commit=True) as cursor:
            cursor.execute(live.tables.sql(f"UPDATE {table} SET status = ? WHERE operation_id = ?"),
                           ["completed", "op-2-parked"])
        differences = replay(app, verify=True)["differences"]
        assert len(differences) == 1 and "op-2-parked" in differences[0] and "status" in differences[0]


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_overlapping_read_model_writes_wait_instead_of_deadlocking(app, store: str) -> None:  # type: ignore[no-untyped-def]
    """Two processes projecting overlapping slices touch the same rows. Another session holds row
    `a` and will next take `b`; a write naming `b` before `a` must not take `b` first (that is a
    deadlock on PostgreSQL, which stopped a processor in a kill storm): rows go in id order."""
    tables = Projection(app).tables
    row = {"doc": {"x": 1}, "customer_id": "c"}
    url, _, schema = store.partition("?schema=")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            tables.write({"customers": {"b": row, "a": row}}, Tracking("deadlock-test", 1))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    with psycopg.connect(url, autocommit=False) as other:
        other.execute(f'SET search_path TO "{schema}"')
        upsert = ("INSERT INTO rm_customers (id, customer_id, doc) VALUES (%s, 'c', '{}') "
                  "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc")
        other.execute(upsert, ["a"])
        writer = threading.Thread(target=write)
        writer.start()
        # The writer waits on `a` (sorted), or holds `b` and waits on `a` (unsorted): either way,
        # a lock it asked for and was not granted.
        with psycopg.connect(url, autocommit=True) as watcher:
            wait_for(lambda: watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0] > 0,  # type: ignore[index]
                     30, "the writer waiting on a row lock")
        other.execute(upsert, ["b"])
        other.commit()
    writer.join(timeout=30)
    assert not writer.is_alive() and errors == []
    assert {r["id"] for r in tables.fetch(f"SELECT id FROM {tables.table('customers')} WHERE id IN ('a', 'b')")} == {"a", "b"}


def test_read_models_opened_beside_a_writer_take_no_lock(app, store: str) -> None:  # type: ignore[no-untyped-def]
    """Once the read models are made, opening them again (every process but the first: `coterm
    serve`, the bench's harness) changes nothing and so locks nothing: `CREATE INDEX IF NOT
    EXISTS` locks its table even when the index is there, which waited on a writer's row lock,
    and deadlocked with one that wrote two read models."""
    from projections.projection import read_models

    read_models(app)
    if not store.startswith("postgresql"):
        return  # SQLite: one writer at a time, no such lock
    url, _, schema = store.partition("?schema=")
    opened = threading.Event()
    with psycopg.connect(url, autocommit=False) as writer:
        writer.execute(f'LOCK TABLE "{schema}".rm_operations IN ROW EXCLUSIVE MODE')  # as a row write holds it
        threading.Thread(target=lambda: (read_models(app), opened.set()), daemon=True).start()
        assert opened.wait(10), "opening the read models waited on a writer's lock"
        writer.rollback()


def test_only_the_leading_outbox_projects_and_the_others_see_how_far_it_is(app) -> None:  # type: ignore[no-untyped-def]
    """The read models are shared tables: with several processors, each outbox projecting every
    event cost CPU once per processor and lock waits between them (`KeptReadModels`)."""
    seeded(app)
    head = app.process_recorder.max_notification_id()
    follower, leader = KeptReadModels(Projection(app)), KeptReadModels(Projection(app))
    status = SharedStatus.create()
    assert follower.round(status, leading=False) == 0
    assert follower.projection.position == 0 and status.read_models_caught_up_at.value == 0.0  # nothing projected
    while leader.round(SharedStatus.create(), leading=True):
        pass
    assert leader.projection.position == head
    follower.observed_at = 0.0  # it looks every OBSERVE_EVERY_S
    assert follower.round(status, leading=False) == 0
    assert status.read_model_position.value == head and status.read_models_caught_up_at.value > 0  # ready


def test_the_leading_outbox_catches_up_a_steady_flow_every_quarter_second_and_is_ready(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A catch-up every round of a steady flow rewrote the same rows for a few events each; and
    under such a flow a catch-up seldom finds nothing left, which was the only time the read
    models counted as at the head (`/readyz`): reading every event up to the head is."""
    seeded(app)
    kept, status = KeptReadModels(Projection(app)), SharedStatus.create()
    assert kept.round(status, leading=True) > 0
    assert kept.projection.position == app.process_recorder.max_notification_id()
    seed.operation(app, "op-steady", "completed")  # more events, as in a steady flow
    seed.run(app, commands.define_product, "p-last", "Last", True, True)  # the head: an event no read model takes
    head, ready_at = app.process_recorder.max_notification_id(), status.read_models_caught_up_at.value
    kept.projected_at = time.monotonic()  # the last catch-up just now, however long the seeding above took
    assert kept.round(status, leading=True) == 0  # too soon after the last catch-up
    kept.projected_at -= READ_MODEL_EVERY_S
    assert kept.round(status, leading=True) > 0
    assert kept.projection.position == head  # over the event of another topic too: every event to the head was read
    assert status.read_models_caught_up_at.value > ready_at  # at the head as it was when asked
    assert "op-steady" in {json.loads(d)["operation_id"] for d in docs(kept.projection, "operations").values()}
    monkeypatch.setattr("processor.outbox.read_model_process.READ_MODEL_SLICE", 2)  # a slice that leaves more behind
    seed.operation(app, "op-more", "completed")
    kept.projected_at -= READ_MODEL_EVERY_S
    assert kept.round(status, leading=True) == 2
    assert kept.round(status, leading=True) == 2  # at once: more was behind
    while kept.round(status, leading=True):
        pass
    assert kept.projection.position == app.process_recorder.max_notification_id()


def test_an_event_recorded_while_the_projection_finds_nothing_new_is_not_skipped(app) -> None:  # type: ignore[no-untyped-def]
    """Another process commits between the projection's look for new events and its look at the
    store's head: the position must not move over that event (a dashboard once never showed a
    re-driven purchase)."""
    seeded(app)
    projection = Projection(app)
    projection.run_to_end()
    seed.run(app, commands.define_product, "p-late", "Late", True, True)  # an event no read model takes
    select = app.process_recorder.select_rows
    committed = []  # once: the write's own cache refresh reads through this same recorder

    def then_another_writer_commits(*args):  # type: ignore[no-untyped-def]
        found = select(*args)
        if not found and not committed:
            committed.append(True)
            seed.run(app, commands.register_customer, "c-late", partner_id="p", name="Late Ltd", channel="direct",
                     distributor_id=None, data_complete=True)
        return found

    app.process_recorder.select_rows = then_another_writer_commits
    try:
        projection.catch_up()
    finally:
        app.process_recorder.select_rows = select
    projection.run_to_end()
    assert any(json.loads(doc)["customer_id"] == "c-late" for doc in docs(projection, "customers").values())


def test_read_models_of_an_earlier_version_gain_the_tenant_columns(app) -> None:  # type: ignore[no-untyped-def]
    """A store whose customers table predates tenants (no partner_id, distributor_id columns):
    opening it adds them, filled from each row's document, so tenant queries see old customers."""
    from projections.identity import Tenant
    from projections.queries import Queries
    from tests import tenants

    tenants.build(app)
    projection = Projection(app)
    projection.run_to_end()
    table = projection.tables.table("customers")
    with projection.tables.datastore.transaction(commit=True) as cursor:  # as an earlier version left it
        for column in ("partner_id", "distributor_id"):
            cursor.execute(f"DROP INDEX IF EXISTS {projection.tables.index(f'rm_customers_{column}')}")
            cursor.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    with pytest.raises(Exception, match="(?i)partner_id"):
        projection.tables.fetch(f"SELECT partner_id FROM {table}")
    upgraded = Projection(app)  # opening again: the columns come back, from the documents
    queries = Queries(app, upgraded.tables)
    for user in ("pam", "dora"):
        claims = tenants.USERS[user]
        tenant = Tenant("partner", claims["partner_id"]) if "partner_id" in claims else Tenant("distributor", claims["distributor_id"])
        assert {c["customer_id"] for c in queries.list_customers(tenant=tenant)["items"]} == tenants.own_customers(user)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_replay_process_that_fails_says_why_and_the_replay_fails_instead_of_hanging(app, store: str) -> None:  # type: ignore[no-untyped-def]
    """The spawned processes take ranges from a queue: one that fails must fail the replay (a
    silent exit would leave the caller waiting for its count), whichever process took the range."""
    seeded(app)
    stop_at = app.process_recorder.max_notification_id()
    whole = replay(app, workers=1)["events_read"]  # also makes the tables a spawned process expects

    def taken(*ranges: tuple[str, None] | None) -> tuple[str, object]:
        todo: queue.Queue[object] = queue.Queue()
        done: queue.Queue[tuple[str, object]] = queue.Queue()
        for item in ranges:
            todo.put(item)
        _rebuild_taken(dict(app.env), stop_at, todo, done)  # as a spawned process runs it
        return done.get_nowait()

    Projection(app, prefix="rp").tables.drop()
    Projection(app, prefix="rp")
    assert taken(("", None), None) == ("read", whole)  # every event, in one range, then the stop
    with sqlite3.connect(store) as db:  # now stored events that do not decode
        db.execute("UPDATE stored_events SET state = ? WHERE topic LIKE '%Transfer.Opened'", [b"{not json"])
    outcome, why = taken(("", None), None)
    assert outcome == "failed" and str(why).startswith("JSONDecodeError: Expecting property name")
    with pytest.raises(RuntimeError, match="a replay process failed: JSONDecodeError"):
        _share_read((outcome, why))
    dead = multiprocessing.get_context("spawn").Process(target=os._exit, args=(3,))  # killed, say
    dead.start()
    dead.join(30)
    with pytest.raises(RuntimeError, match="a replay process ended with exit code 3"):
        _taken(queue.Queue(), [dead])  # nothing comes, and the one that would send it is gone
    started = time.monotonic()
    with pytest.raises(Exception, match="Expecting property name"):
        replay(app)  # two processes: each meets broken events, and the caller raises
    assert time.monotonic() - started < 60
