"""The whole pipeline, end to end through the wire contract, beside a naive baseline.

  python -m bench.pipeline [--transfers 3000] [--store postgresql://...] [--quick] [--broker kafka|tansu]

Starts the broker (Apache Kafka from its Maven Central jars where Java and Maven are present,
else, or with `--broker tansu`, the bundled Tansu broker) and the vendor simulator (its own
process), then:
1. `coterm run` (its own process): reference data, then N transfers published at once;
   completed transfers/s from the start of publishing to the last `transfer.completed`,
   events written per transfer, CPU per transfer once the burst's read models are current too;
2. a steady 200 transfers/s for a while: pairing latency p50/p99, from the later half's
   publication to its `VendorCallRequested` being recorded, and CPU per transfer at that rate;
3. 100,000 halves that wait for their pair: peak RSS of `coterm run`;
4. the naive baseline (`bench/naive.py`) on the same workload and the same broker;
5. the burst again, into a store already holding 1,000,000 events (`--filled-events`; filled
   in-process through the real inbox, read models projected before the burst): CPU per transfer
   beside the empty store's;
6. the limits of this machine in the same run: kafka-python's consume rate and the event
   store's append rate (100 aggregates per save);
7. `coterm replay` on a store of >= 200,000 events.
"""

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import naive, workload
from bench.limits import append_rate, consume_rate
from bench.replay_store import build_store
from bench.running import (
    COTERM,
    PARTITIONS,
    Coterm,
    Profiles,
    ResultWatcher,
    Topics,
    VendorSim,
    cpu_by_process,
    cpu_seconds,
    drop_schema,
    in_schema,
    pairing_latencies_ms,
    peak_rss_mb,
    percentile,
    shown,
    system_seconds,
)
from processor.dev.broker import ON_BUNDLED_BROKER_ENV, BundledBroker
from processor.dev.kafka_cluster import KafkaCluster, missing_tools


@dataclass
class Figures:
    rows: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> None:
        self.rows[name] = value
        print(f"  {name}: {shown(name, value)}", flush=True)

    def put_cpu(self, name: str, pid: int, before: dict[str, float], transfers: int, phase: str = "") -> float:
        """CPU per transfer of coterm's processes since `before` (`cpu_by_process`), each one's beside it."""
        spent = {process: (seconds - before[process]) * 1000 / transfers for process, seconds in cpu_by_process(pid).items()}
        total = sum(spent.values())
        self.put(name, total)
        for process, ms in spent.items():
            self.put(f"  of which its {process} process{phase}", ms)
        return total


@contextlib.contextmanager
def started(args: argparse.Namespace, broker: Any, vendor: VendorSim, store: str, tag: str, log: Path,
            timeout_s: float = 300) -> Iterator[tuple[Coterm, Topics, ResultWatcher]]:
    """`coterm run` on `store` with topics of its own, the reference data applied and everything
    settled (its outbox process up and idle: its start-up is not a burst's work); stopped, and
    its schema dropped, afterwards, and its log's end printed when the phase fails."""
    topics = Topics(broker.bootstrap, tag)
    watcher = ResultWatcher(broker.bootstrap, topics.results)
    watcher.start()
    coterm = Coterm(broker.bootstrap, store, vendor.url, topics, log)
    try:
        topics.publish(workload.reference_data(tag, args.customers, args.subscriptions))
        coterm.wait_applied(timeout_s=timeout_s)
        coterm.wait_settled(timeout_s=timeout_s)
        yield coterm, topics, watcher
    except Exception:
        print(f"coterm's log ends:\n{coterm.tail()}", file=sys.stderr)
        raise
    finally:
        watcher.stop.set()
        coterm.stop()
        drop_schema(store)


def bench_coterm(args: argparse.Namespace, broker: Any, vendor: VendorSim, tmp: Path, f: Figures) -> None:
    tag = f"coterm{uuid.uuid4().hex[:6]}"
    store = in_schema(args.store or str(tmp / "coterm.sqlite"), f"bench_{tag}")
    with started(args, broker, vendor, store, tag, tmp / "coterm.log") as (coterm, topics, watcher):
        burst(args, coterm, topics, watcher, tag, f)
        if args.steady_seconds:
            bench_steady(args, coterm, topics, watcher, tag, f)
        if args.waiting:
            halves = [m for m in workload.transfers(tag, args.waiting, args.customers, args.subscriptions,
                                                     first=10_000_000) if b"downgrade" in m.value]
            topics.publish(halves)
            coterm.wait_applied(timeout_s=900)
            f.put(f"coterm peak RSS MB ({args.waiting:,} halves waiting)", peak_rss_mb(coterm.process.pid))
        else:
            f.put("coterm peak RSS MB", peak_rss_mb(coterm.process.pid))
        f.put("limit: kafka-python consume msgs/s", consume_rate(broker.bootstrap, topics.orders))


def burst(args: argparse.Namespace, coterm: Coterm, topics: Topics, watcher: ResultWatcher, tag: str, f: Figures,
          stored: str = "") -> float:
    """`--transfers` published at once into a settled coterm: its figures (their names end with
    `stored`); returns the CPU per transfer of all its processes."""
    before = coterm.events()
    transactions, statements = pg_transactions(args.store), pg_statements(args.store, reset=True)
    cpu, kernel, conflicts = cpu_by_process(coterm.process.pid), system_seconds(coterm.process.pid), coterm.conflicts()
    began = time.time()
    profile = args.profile / "filled" if args.profile and stored else args.profile
    with Profiles(coterm.process.pid, profile) if profile else contextlib.nullcontext():
        topics.publish(workload.transfers(tag, args.transfers, args.customers, args.subscriptions))
        watcher.wait_completed(args.transfers, 600, coterm.alive)
    elapsed = watcher.last_completed_ms / 1000 - began
    coterm.wait_applied()
    coterm.wait_settled()  # the burst's read models too: their CPU is the burst's
    f.put(f"coterm transfers/s{stored}", args.transfers / elapsed)
    ms = f.put_cpu(f"coterm CPU ms/transfer{stored}", coterm.process.pid, cpu, args.transfers, stored and ", filled")
    f.put(f"  of which in the kernel (all three){stored and ', filled'}",
          (system_seconds(coterm.process.pid) - kernel) * 1000 / args.transfers)
    if stored:
        return ms
    f.put("coterm events/transfer", coterm.events_after(before) / args.transfers)
    f.put("coterm conflicting transactions per 1,000 transfers", (coterm.conflicts() - conflicts) * 1000 / args.transfers)
    if statements is not None:  # counted at once (the idle processes' own reads would add up)
        f.put("coterm PostgreSQL statements/transfer", (pg_statements(args.store) - statements) / args.transfers)
    if transactions is not None:
        time.sleep(11)  # the burst settled above; an idle backend flushes its counters within 10 s
        f.put("coterm PostgreSQL transactions/transfer", (pg_transactions(args.store) - transactions) / args.transfers)
    return ms


def bench_filled(args: argparse.Namespace, broker: Any, vendor: VendorSim, tmp: Path, f: Figures) -> None:
    """The same burst into a store that already holds `--filled-events` events (other customers'
    transfers through the real inbox, in-process, as the replay store is built, and its read
    models projected): what a store that has run for years costs each transfer, beside the
    empty store's figure."""
    tag = f"filled{uuid.uuid4().hex[:6]}"
    store = in_schema(args.store or str(tmp / "filled.sqlite"), f"bench_{tag}")
    started_at = time.perf_counter()
    if args.filled_store:  # filled once (or grown), a copy for each run
        stored = build_store(str(args.filled_store), args.filled_events, project=True)
        for suffix in ("", "-wal"):
            if Path(f"{args.filled_store}{suffix}").exists():
                shutil.copyfile(f"{args.filled_store}{suffix}", f"{store}{suffix}")
    else:
        stored = build_store(store, args.filled_events, project=True)
    print(f"  (filled with {stored:,} events in {time.perf_counter() - started_at:.0f} s)", flush=True)
    with started(args, broker, vendor, store, tag, tmp / "filled.log", timeout_s=900) as (coterm, topics, watcher):
        ms = burst(args, coterm, topics, watcher, tag, f, f" with {stored:,} events stored")
        f.put("coterm CPU per transfer, filled store / empty store", f"{ms / f.rows['coterm CPU ms/transfer']:.2f}x")


def bench_steady(args: argparse.Namespace, coterm: Coterm, topics: Topics, watcher: ResultWatcher, tag: str,
                 f: Figures) -> None:
    """A steady rate after the burst (settled: its results and read models done): pairing latency,
    and CPU per transfer where each poll and round holds a few messages, so what each costs shows
    (a burst's batches hide it)."""
    n = int(args.steady_rate * args.steady_seconds)
    mark, statements = coterm.events(), pg_statements(args.store, reset=True)
    cpu = cpu_by_process(coterm.process.pid)
    sent = topics.publish(workload.transfers(tag, n, args.customers, args.subscriptions, first=args.transfers),
                          rate=2 * args.steady_rate)
    watcher.wait_completed(args.transfers + n, 600, coterm.alive)
    coterm.wait_settled()
    lat = pairing_latencies_ms(coterm.app, sent, mark)
    f.put("pairing latency p50 ms", percentile(lat, 0.5))
    f.put("pairing latency p99 ms", percentile(lat, 0.99))
    f.put_cpu(f"coterm CPU ms/transfer at {args.steady_rate:g} transfers/s", coterm.process.pid, cpu, n, ", steady")
    if statements is not None:
        f.put(f"coterm PostgreSQL statements/transfer at {args.steady_rate:g} transfers/s",
              (pg_statements(args.store) - statements) / n)


def bench_naive(args: argparse.Namespace, broker: Any, vendor: VendorSim, tmp: Path, f: Figures) -> None:
    """The naive baseline on the kind of store coterm ran on (SQLite: a file of its own); beside a
    PostgreSQL run, on SQLite too (what runs before this compared PostgreSQL's coterm with)."""
    on_postgres = bool(args.store) and args.store.startswith("postgresql://")
    if on_postgres:
        store = in_schema(args.store, f"bench_naive{uuid.uuid4().hex[:6]}")
        try:
            naive_run(args, broker, vendor, store, "naive", f)
        finally:
            drop_schema(store)
    naive_run(args, broker, vendor, str(tmp / "naive.sqlite"), "naive on SQLite" if on_postgres else "naive", f)


def naive_run(args: argparse.Namespace, broker: Any, vendor: VendorSim, store: str, label: str, f: Figures) -> None:
    tag = f"naive{uuid.uuid4().hex[:6]}"
    topics = Topics(broker.bootstrap, tag)
    watcher = ResultWatcher(broker.bootstrap, topics.results)
    watcher.start()
    process = subprocess.Popen([sys.executable, "-m", "bench.naive", broker.bootstrap, store,
                                vendor.url, topics.orders, topics.results])
    try:
        topics.publish(workload.reference_data(tag, args.customers, args.subscriptions))
        deadline = time.monotonic() + 300
        while True:  # until the baseline applied the reference data
            done = naive.positions(store)
            if all(done.get(p, 0) >= end for p, end in topics.ends.items()):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the naive baseline did not apply the reference data")
            time.sleep(0.1)
        cpu = cpu_seconds(process.pid)
        began = time.time()
        topics.publish(workload.transfers(tag, args.transfers, args.customers, args.subscriptions))
        watcher.wait_completed(args.transfers, 600, lambda: process.poll() is None)
        f.put(f"{label} transfers/s", args.transfers / (watcher.last_completed_ms / 1000 - began))
        f.put(f"{label} CPU ms/transfer", (cpu_seconds(process.pid) - cpu) * 1000 / args.transfers)
    finally:
        watcher.stop.set()
        process.terminate()
        process.wait(10)


def pg_transactions(store: str | None) -> int | None:
    """Transactions committed and rolled back in the store's database so far (PostgreSQL's own
    counters; the bench's other writers are idle meanwhile): each one at least a round trip."""
    if not store or not store.startswith("postgresql://"):
        return None
    with psycopg.connect(store.split("?")[0], autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else None


def pg_statements(store: str | None, reset: bool = False) -> int | None:
    """Statements run in the store's database since the last `reset`, BEGIN and COMMIT included
    (PostgreSQL's `pg_stat_statements`, where the server loads it: `deploy/postgres/local.sh`
    does); None elsewhere. A reset clears the server's counts: it keeps a few thousand distinct
    statements, and every bench run's schema makes new ones, so older ones drop out of a running
    sum. The bench's own few reads while it waits for coterm are counted too."""
    if not store or not store.startswith("postgresql://"):
        return None
    try:
        with psycopg.connect(store.split("?")[0], autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if reset:
                conn.execute("SELECT pg_stat_statements_reset()")
                return 0
            row = conn.execute("SELECT sum(calls) FROM pg_stat_statements WHERE dbid = "
                               "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()
    except psycopg.Error:  # not loaded (shared_preload_libraries), or not ours to create or reset
        return None
    return int(row[0] or 0) if row else None


def bench_replay(args: argparse.Namespace, tmp: Path, f: Figures) -> None:
    store = str(tmp / "replay.sqlite")
    events = build_store(store, args.replay_events)
    out = subprocess.run([*COTERM, "replay"], env={**os.environ, "COTERM_STORE": store}, capture_output=True,
                         text=True, check=True).stdout
    read, seconds = re.search(r"replayed (\d+) events .* in ([\d.]+)s", out).groups()  # type: ignore[union-attr]
    f.put(f"replay events/s ({events:,} events in the store)", int(read) / float(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    workload.add_arguments(parser)
    parser.add_argument("--steady-rate", type=float, default=200.0, help="transfers/s of the latency phase")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--waiting", type=int, default=100_000, help="halves left waiting for the RSS figure")
    parser.add_argument("--replay-events", type=int, default=200_000)
    parser.add_argument("--filled-events", type=int, default=1_000_000,
                        help="the burst again on a store filled with this many events first (0: not)")
    parser.add_argument("--filled-store", type=Path, metavar="PATH",
                        help="SQLite: keep the filled store at PATH and run on a copy (filled once, used again)")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy (installed apart) samples coterm's processes during the burst into DIR")
    parser.add_argument("--quick", action="store_true", help="no latency, waiting, replay or limit phases")
    parser.add_argument("--broker", choices=("kafka", "tansu"),
                        help="Apache Kafka (default where java and mvn are on PATH) or the bundled Tansu broker")
    args = parser.parse_args()
    args.broker = args.broker or ("tansu" if missing_tools() else "kafka")
    if args.filled_store and args.store:
        parser.error("--filled-store keeps a SQLite store; not with --store")
    if args.quick:
        args.steady_seconds, args.waiting, args.replay_events, args.filled_events = 0, 0, 0, 0
    f = Figures()
    with tempfile.TemporaryDirectory() as tmp, (KafkaCluster() if args.broker == "kafka" else BundledBroker()) as broker:
        named = f"Apache Kafka {broker.version}" if args.broker == "kafka" else "bundled Tansu"
        print(f"{args.transfers:,} transfers, {args.customers} customers x {args.subscriptions} sources, "
              f"{PARTITIONS} partitions, store: {args.store or 'SQLite'}, broker: {named}", flush=True)
        if args.broker == "tansu":
            os.environ.update(ON_BUNDLED_BROKER_ENV)
        vendor = VendorSim()
        try:
            bench_coterm(args, broker, vendor, Path(tmp), f)
            if not args.no_naive:
                bench_naive(args, broker, vendor, Path(tmp), f)
            if args.filled_events:
                bench_filled(args, broker, vendor, Path(tmp), f)
        finally:
            vendor.stop()
        if not args.quick:
            f.put("limit: store append events/s (100 per save)", append_rate(in_schema(args.store or str(Path(tmp) / "append.sqlite"),
                                                                          f"bench_append_{uuid.uuid4().hex[:6]}")))
        if args.replay_events:
            bench_replay(args, Path(tmp), f)
    print_table(f.rows)


def print_table(rows: dict[str, Any]) -> None:
    print("\n| figure | value |\n| --- | ---: |")
    for name, value in rows.items():
        print(f"| {name} | {shown(name, value)} |")
    coterm, naive = rows.get("coterm transfers/s"), rows.get("naive transfers/s")
    if coterm and naive:
        print(f"| coterm / naive | {coterm / naive:.2f}x |")
    if coterm and rows.get("naive on SQLite transfers/s"):
        print(f"| coterm / naive on SQLite | {coterm / rows['naive on SQLite transfers/s']:.2f}x |")
    limit = rows.get("limit: store append events/s (100 per save)")
    if coterm and limit:
        print(f"| coterm events/s / store append limit | {coterm * rows['coterm events/transfer'] / limit:.2f} |")


if __name__ == "__main__":
    main()
