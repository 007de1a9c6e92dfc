"""The naive baseline (`bench.naive`) does on PostgreSQL what it does on SQLite: `make bench` on
PostgreSQL compares coterm with it on the same store, so its figure is only a baseline if the
same stream leaves the same state in both."""

import subprocess
import sys
import time
import uuid
from contextlib import closing
from typing import Any

import psycopg
from psycopg import sql

from bench import naive, workload
from bench.running import ResultWatcher, Topics
from processor.dev.vendor_sim import VendorSimulator

TRANSFERS = 30


def run(bootstrap: str, store: str, messages: list[workload.Message]) -> tuple[dict[str, int], set[tuple[Any, ...]]]:
    """The stream through the baseline on `store`, with a vendor of its own (the operation ids are
    the same in both runs): the results by type, and each subscription's and transfer's state."""
    topics = Topics(bootstrap, uuid.uuid4().hex[:8])
    watcher = ResultWatcher(bootstrap, topics.results)
    watcher.start()
    vendor = VendorSimulator().start()
    process = subprocess.Popen([sys.executable, "-m", "bench.naive", bootstrap, store, vendor.url,
                                topics.orders, topics.results])
    try:
        topics.publish(messages)
        watcher.wait_completed(TRANSFERS, 120, lambda: process.poll() is None)
        assert sum(naive.positions(store).values()) == len(messages)  # every message applied, its position kept
        with closing(naive.connect(store)) as db:
            state = {("subscription", *row) for row in db.execute("SELECT id, customer_id, seats FROM subscriptions")}
            state |= {("transfer", *row) for row in db.execute("SELECT id, status FROM transfers")}
            deadline = time.monotonic() + 10  # results are marked published once Kafka acknowledged them
            while db.execute("SELECT COUNT(*) FROM outbox WHERE published = 0").fetchone()[0]:
                assert time.monotonic() < deadline, "results left unpublished"
                time.sleep(0.05)
        return dict(watcher.counts), state
    finally:
        watcher.stop.set()
        process.terminate()
        process.wait(10)
        vendor.stop()


def test_the_same_stream_leaves_the_same_state_on_both_stores(broker: Any, tmp_path: object,
                                                               postgres_schema_store: str) -> None:
    messages = workload.reference_data("naive", 3, 2) + workload.transfers("naive", TRANSFERS, 3, 2)
    on_sqlite = run(broker.bootstrap, f"{tmp_path}/naive.sqlite", messages)
    on_postgres = run(broker.bootstrap, postgres_schema_store, messages)
    assert on_sqlite[0] == {"transfer.completed": TRANSFERS}
    # each transfer completed, its new subscription made, each source's seats counted down
    assert len([s for s in on_sqlite[1] if s[0] == "transfer" and s[2] == "completed"]) == TRANSFERS
    assert len([s for s in on_sqlite[1] if s[0] == "subscription"]) == 3 * 2 + TRANSFERS
    assert on_postgres == on_sqlite


def test_positions_are_empty_before_the_tables_exist(tmp_path: object, postgres_schema_store: str) -> None:
    assert naive.positions(f"{tmp_path}/none.sqlite") == {}
    assert naive.positions(postgres_schema_store) == {}
    # and the reading made nothing: the baseline's own start makes its schema and tables
    base, _, query = postgres_schema_store.partition("?")
    with psycopg.connect(base, autocommit=True) as conn:
        schema = query.split("=", 1)[1]
        found = conn.execute(sql.SQL("SELECT 1 FROM information_schema.schemata WHERE schema_name = {}")
                             .format(sql.Literal(schema))).fetchone()
    assert found is None

