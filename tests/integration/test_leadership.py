"""The outbox lease on real PostgreSQL: one leader at a time, a takeover once a leader stops
renewing (as when it is paused), and a former leader's writes fenced off in the same
transaction. The storm shows the same with SIGSTOP on whole processes."""

import time
import uuid
from collections.abc import Iterator

import pytest

from processor.outbox.leadership import Leadership
from processor.store.opening import open_store, store_env
from processor.store.recorders import Fenced
from tests.backend import postgres_store
from tests.waiting import seconds_until
from tests.world import at


@pytest.fixture
def pg_store() -> Iterator[str]:
    for store in postgres_store():
        open_store(store).close()
        yield store


def stop_renewing(leadership: Leadership) -> None:
    """What a SIGSTOP does to the lease: the renewing thread stops; the process keeps its state."""
    leadership._stop.set()
    assert leadership._thread is not None
    leadership._thread.join(timeout=5)


def test_one_leader_then_a_takeover_and_the_former_leader_is_fenced(pg_store: str) -> None:
    from aggregates import commands

    env = store_env(pg_store)
    first, second = Leadership(env, ttl_s=1.0, renew_s=0.1), Leadership(env, ttl_s=1.0, renew_s=0.1)
    app = open_store(pg_store)
    try:
        seconds_until(first.held)
        time.sleep(0.5)
        assert not second.held()  # one leader at a time while the first renews
        fence = first.fence()
        assert fence is not None

        def catalog_change(uow):  # type: ignore[no-untyped-def]
            commands.define_product(uow, commands.Context(str(uuid.uuid4()), at("2026-11-01"), at("2026-11-01")),
                                    f"p-{uuid.uuid4().hex[:6]}", "P", True, False)

        app.decide(catalog_change, fence=fence)  # a write under a held lease goes through
        stop_renewing(first)
        waited = seconds_until(second.held)
        assert second.epoch == fence.epoch + 1
        assert waited < 5  # the lease ran out and moved (ttl 1 s)
        assert not first.held()  # its own clock says the lease may have lapsed
        before = app.recorder.max_notification_id()
        with pytest.raises(Fenced):
            app.decide(catalog_change, fence=fence)  # resumed with a stale lease: records nothing
        assert app.recorder.max_notification_id() == before
        app.decide(catalog_change, fence=second.fence())
    finally:
        second.release()
        first.release()
        app.close()


def test_a_clean_stop_hands_the_lease_over_at_once(pg_store: str) -> None:
    env = store_env(pg_store)
    first, second = Leadership(env, ttl_s=30.0, renew_s=0.1), Leadership(env, ttl_s=30.0, renew_s=0.1)
    try:
        seconds_until(first.held)
        first.release()
        assert seconds_until(second.held) < 5  # not the 30 s the lease would otherwise run
    finally:
        second.release()


def test_a_writer_stuck_on_its_client_while_holding_the_insert_lock_is_ended(pg_store: str) -> None:
    """A process paused in the middle of a write holds the event table's insert lock, and every
    writer waits behind it; the lease thread of any processor ends that session."""
    import threading

    import psycopg

    from aggregates import commands
    from processor.store.opening import connect_postgres

    env = store_env(pg_store)
    app = open_store(pg_store)
    stuck = connect_postgres(env)
    watcher = Leadership(env, ttl_s=1.0, renew_s=0.2)
    try:
        stuck.autocommit = False
        stuck.execute(f'LOCK TABLE "{env["POSTGRES_SCHEMA"]}".coterm_events IN EXCLUSIVE MODE')  # then "paused"
        wrote = threading.Event()

        def write() -> None:
            app.decide(lambda uow: commands.define_product(
                uow, commands.Context(str(uuid.uuid4()), at("2026-11-01"), at("2026-11-01")), "p-x", "P", True, False))
            wrote.set()

        threading.Thread(target=write, daemon=True).start()
        assert not wrote.wait(1.0)  # blocked behind the stuck session
        watcher.held()  # starts the lease thread, which looks for stuck writers
        assert wrote.wait(15)
        with pytest.raises(psycopg.Error):
            stuck.execute("SELECT 1")  # its session was ended
    finally:
        watcher.release()
        stuck.close()
        app.close()


def test_a_leader_stopped_inside_a_fenced_write_does_not_keep_the_lease_from_moving(pg_store: str) -> None:
    """A write under the lease checks its fence with a share lock on the lease row, held until the
    write ends; a leader paused inside one (a storm's SIGSTOP) would hold off every takeover for
    the whole pause: the lease threads end that session as they end a stuck insert."""
    import psycopg

    from processor.store.opening import connect_postgres
    from processor.store.recorders import LEASES

    env = store_env(pg_store)
    first, second = Leadership(env, ttl_s=1.0, renew_s=0.1), Leadership(env, ttl_s=1.0, renew_s=0.1)
    paused_write = connect_postgres(env)
    try:
        seconds_until(first.held)
        fence = first.fence()
        assert fence is not None
        paused_write.autocommit = False
        found = paused_write.execute(  # the fence check of `PostgresSeenRecorder`, then "paused"
            f'SELECT epoch FROM "{env["POSTGRES_SCHEMA"]}".{LEASES} WHERE name = %s AND holder = %s AND epoch = %s '
            "FOR SHARE", tuple(fence)).fetchone()
        assert found is not None
        stop_renewing(first)
        seconds_until(second.held, timeout=20)
        assert second.epoch == fence.epoch + 1
        with pytest.raises(psycopg.Error):
            paused_write.execute("SELECT 1")  # its session was ended, its write undone
    finally:
        second.release()
        first.release()
        paused_write.close()


def test_a_process_stopped_inside_a_read_model_write_does_not_hold_up_the_others(pg_store: str) -> None:
    """Every outbox process keeps the read models; one paused inside its upsert holds those rows'
    locks, and the others' projection (the round in which they would take over) waits behind it."""
    import threading

    import psycopg

    from processor.store.opening import connect_postgres

    env = store_env(pg_store)
    table = f'"{env["POSTGRES_SCHEMA"]}".rm_customers'
    stuck, other = connect_postgres(env), connect_postgres(env)
    watcher = Leadership(env, ttl_s=1.0, renew_s=0.2)
    upsert = f"INSERT INTO {table} (id, customer_id, doc) VALUES ('x', 'c', '{{}}') ON CONFLICT (id) DO UPDATE SET doc = '{{}}'"
    try:
        stuck.autocommit = False
        stuck.execute(upsert)  # then "paused"
        wrote = threading.Event()

        def write() -> None:
            other.execute(upsert)
            wrote.set()

        threading.Thread(target=write, daemon=True).start()
        assert not wrote.wait(1.0)  # blocked behind the stopped one's row lock
        watcher.held()
        assert wrote.wait(15)
        with pytest.raises(psycopg.Error):
            stuck.execute("SELECT 1")
    finally:
        watcher.release()
        stuck.close()
        other.close()
