"""The whole pipeline, end to end through the wire contract, beside a naive baseline.

  python -m bench.pipeline [--transfers 3000] [--store postgresql://...] [--quick]

Starts the bundled broker and the vendor simulator (its own process), then:
1. `coterm run` (its own process): reference data, then N transfers published at once;
   completed transfers/s from the start of publishing to the last `transfer.completed`,
   events written per transfer;
2. a steady 200 transfers/s for a while: pairing latency p50/p99, from the later half's
   publication to its `VendorCallRequested` being recorded;
3. 100,000 halves that wait for their pair: peak RSS of `coterm run`;
4. the naive baseline (`bench/naive.py`) on the same workload and the same broker;
5. the limits of this machine in the same run: kafka-python's consume rate and the event
   store's append rate (100 aggregates per save);
6. `coterm replay` on a store of >= 200,000 events.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench import workload
from processor.broker import BundledBroker, ensure_topics, free_port
from processor.store import open_store

PARTITIONS = 3
COTERM = [sys.executable, "-m", "processor.cli"]


@dataclass
class Figures:
    rows: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> None:
        self.rows[name] = value
        print(f"  {name}: {value if not isinstance(value, float) else f'{value:,.1f}'}", flush=True)


# -- infrastructure ----------------------------------------------------------------------------
class VendorSim:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([*COTERM, "vendor-sim", "--port", str(self.port)], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening on ..."
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Topics:
    def __init__(self, bootstrap: str, tag: str) -> None:
        self.bootstrap = bootstrap
        self.orders, self.results, self.deadletter = f"orders-{tag}", f"results-{tag}", f"deadletter-{tag}"
        ensure_topics(bootstrap, [self.orders, self.results, self.deadletter], partitions=PARTITIONS)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
        self.ends: dict[int, int] = {}

    def publish(self, messages: list[workload.Message], rate: float | None = None) -> dict[str, float]:
        """Send and wait for acks; returns the publication time (epoch s) of each transfer's later half."""
        sent_at: dict[str, float] = {}
        futures = []
        started = time.monotonic()
        for n, m in enumerate(messages):
            if rate is not None:  # messages per second, paced
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            futures.append(self.producer.send(self.orders, key=m.key.encode(), value=m.value))
            if m.operation_id:
                sent_at[m.operation_id] = time.time()  # the later half overwrites the earlier one
        self.producer.flush()
        for f in futures:
            meta = f.get(timeout=60)
            self.ends[meta.partition] = max(self.ends.get(meta.partition, 0), meta.offset + 1)
        return sent_at


class ResultWatcher(threading.Thread):
    """Reads the results topic as it grows: counts by type and the time of the last completion."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      fetch_max_wait_ms=50)
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.counts: dict[str, int] = {}
        self.last_completed_ms = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                with self.lock:
                    for r in records:
                        kind = json.loads(r.value)["type"]
                        self.counts[kind] = self.counts.get(kind, 0) + 1
                        if kind == "transfer.completed":
                            self.last_completed_ms = max(self.last_completed_ms, r.timestamp)
        self.consumer.close()

    def completed(self) -> int:
        with self.lock:
            return self.counts.get("transfer.completed", 0)

    def wait_completed(self, n: int, timeout_s: float, alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout_s
        while self.completed() < n:
            if time.monotonic() > deadline or not alive():
                raise RuntimeError(f"only {self.completed()} of {n} transfers completed ({self.counts})")
            time.sleep(0.05)


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (`coterm run` and its outbox process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for p in [pid, *map(int, children)]:
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return total / 1024


# -- coterm ------------------------------------------------------------------------------------
class Coterm:
    def __init__(self, bootstrap: str, store: str, vendor_url: str, topics: Topics, log: Path) -> None:
        env = {**os.environ, "COTERM_KAFKA_BOOTSTRAP": bootstrap, "COTERM_STORE": store, "COTERM_VENDOR_URL": vendor_url,
               "COTERM_TOPIC_ORDERS": topics.orders, "COTERM_TOPIC_RESULTS": topics.results,
               "COTERM_TOPIC_DEADLETTER": topics.deadletter, "COTERM_GROUP_ID": f"group-{topics.orders}"}
        self.log = log.open("w")
        self.process = subprocess.Popen([*COTERM, "run"], env=env, stderr=self.log)
        self.app = open_store(store)
        self.topics = topics

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_applied(self, timeout_s: float = 300) -> None:
        """Until the store's positions reach everything published."""
        deadline = time.monotonic() + timeout_s
        recorder = self.app.process_recorder
        while any((recorder.max_tracking_id(f"{self.topics.orders}:{p}") or 0) < end for p, end in self.topics.ends.items()):
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"coterm did not apply its input in time; its log ends:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        self.log.flush()
        return "".join(Path(self.log.name).read_text().splitlines(keepends=True)[-15:])

    def events(self) -> int:
        return self.app.process_recorder.max_notification_id() or 0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.app.close()
        self.log.close()


def pairing_latencies_ms(app: Any, sent_at: dict[str, float], after: int) -> list[float]:
    from eventsourcing.utils import get_topic

    from aggregates.transfer import Transfer

    out = []
    start = after + 1
    while True:
        page = app.process_recorder.select_notifications(start=start, limit=1000,
                                                         topics=[get_topic(Transfer.VendorCallRequested)])
        if not page:
            return out
        for n in page:
            event = app.mapper.to_domain_event(n)
            if event.operation_id in sent_at:
                out.append((event.timestamp.timestamp() - sent_at[event.operation_id]) * 1000)
        start = page[-1].id + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def bench_coterm(args: argparse.Namespace, broker: BundledBroker, vendor: VendorSim, tmp: Path, f: Figures) -> None:
    tag = f"coterm{uuid.uuid4().hex[:6]}"
    store = args.store or str(tmp / "coterm.sqlite")
    if store.startswith("postgresql://"):
        store = f"{store}{'&' if '?' in store else '?'}schema=bench_{tag}"
    topics = Topics(broker.bootstrap, tag)
    watcher = ResultWatcher(broker.bootstrap, topics.results)
    watcher.start()
    coterm = Coterm(broker.bootstrap, store, vendor.url, topics, tmp / "coterm.log")
    try:
        topics.publish(workload.reference_data(tag, args.customers, args.subscriptions))
        coterm.wait_applied()
        before = coterm.events()
        started = time.time()
        topics.publish(workload.transfers(tag, args.transfers, args.customers, args.subscriptions))
        watcher.wait_completed(args.transfers, 600, coterm.alive)
        elapsed = watcher.last_completed_ms / 1000 - started
        coterm.wait_applied()
        f.put("coterm transfers/s", args.transfers / elapsed)
        f.put("coterm events/transfer", (coterm.events() - before) / args.transfers)
        if args.steady_seconds:
            n = int(args.steady_rate * args.steady_seconds)
            mark = coterm.events()
            sent = topics.publish(workload.transfers(tag, n, args.customers, args.subscriptions, first=args.transfers),
                                  rate=2 * args.steady_rate)
            watcher.wait_completed(args.transfers + n, 600, coterm.alive)
            lat = pairing_latencies_ms(coterm.app, sent, mark)
            f.put("pairing latency p50 ms", percentile(lat, 0.5))
            f.put("pairing latency p99 ms", percentile(lat, 0.99))
        if args.waiting:
            halves = [m for m in workload.transfers(tag, args.waiting, args.customers, args.subscriptions,
                                                     first=10_000_000) if b"downgrade" in m.value]
            topics.publish(halves)
            coterm.wait_applied(timeout_s=900)
            f.put(f"coterm peak RSS MB ({args.waiting:,} halves waiting)", peak_rss_mb(coterm.process.pid))
        else:
            f.put("coterm peak RSS MB", peak_rss_mb(coterm.process.pid))
        rate = consume_rate(broker.bootstrap, topics.orders)
        f.put("limit: kafka-python consume msgs/s", rate)
    except Exception:
        print(f"coterm's log ends:\n{coterm.tail()}", file=sys.stderr)
        raise
    finally:
        watcher.stop.set()
        coterm.stop()


def bench_naive(args: argparse.Namespace, broker: BundledBroker, vendor: VendorSim, tmp: Path, f: Figures) -> None:
    tag = f"naive{uuid.uuid4().hex[:6]}"
    topics = Topics(broker.bootstrap, tag)
    watcher = ResultWatcher(broker.bootstrap, topics.results)
    watcher.start()
    process = subprocess.Popen([sys.executable, "-m", "bench.naive", broker.bootstrap, str(tmp / "naive.sqlite"),
                                vendor.url, topics.orders, topics.results])
    try:
        import sqlite3

        topics.publish(workload.reference_data(tag, args.customers, args.subscriptions))
        deadline = time.monotonic() + 300
        while True:  # until the baseline applied the reference data
            try:
                with sqlite3.connect(tmp / "naive.sqlite") as db:
                    done = dict(db.execute("SELECT partition, next_offset FROM positions").fetchall())
            except sqlite3.OperationalError:
                done = {}
            if all(done.get(p, 0) >= end for p, end in topics.ends.items()):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the naive baseline did not apply the reference data")
            time.sleep(0.1)
        started = time.time()
        topics.publish(workload.transfers(tag, args.transfers, args.customers, args.subscriptions))
        watcher.wait_completed(args.transfers, 600, lambda: process.poll() is None)
        f.put("naive transfers/s", args.transfers / (watcher.last_completed_ms / 1000 - started))
    finally:
        watcher.stop.set()
        process.terminate()
        process.wait(10)


def consume_rate(bootstrap: str, topic: str) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=500)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    ends = consumer.end_offsets(parts)
    consumer.seek_to_beginning(*parts)
    count, started = 0, time.perf_counter()
    while count < sum(ends.values()) - PARTITIONS and time.perf_counter() - started < 60:
        for records in consumer.poll(timeout_ms=200).values():
            count += len(records)
    consumer.close()
    return count / (time.perf_counter() - started)


def append_rate(store: str, total: int = 20_000, per_save: int = 100) -> float:
    from eventsourcing.domain import Aggregate

    class Probe(Aggregate):
        def __init__(self, n: int) -> None:
            self.n = n

    app = open_store(store)
    started = time.perf_counter()
    for _ in range(total // per_save):
        app.save(*(Probe(n) for n in range(per_save)))
    rate = total / (time.perf_counter() - started)
    app.close()
    return rate


def bench_replay(args: argparse.Namespace, tmp: Path, f: Figures) -> None:
    from bench.replay_store import build_store

    store = str(tmp / "replay.sqlite")
    events = build_store(store, args.replay_events)
    out = subprocess.run([*COTERM, "replay"], env={**os.environ, "COTERM_STORE": store}, capture_output=True,
                         text=True, check=True).stdout
    read, seconds = re.search(r"replayed (\d+) events .* in ([\d.]+)s", out).groups()  # type: ignore[union-attr]
    f.put(f"replay events/s ({events:,} events in the store)", int(read) / float(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=5, help="source subscriptions per customer")
    parser.add_argument("--store", help="a postgresql:// URL (default: a fresh SQLite file)")
    parser.add_argument("--steady-rate", type=float, default=200.0, help="transfers/s of the latency phase")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--waiting", type=int, default=100_000, help="halves left waiting for the RSS figure")
    parser.add_argument("--replay-events", type=int, default=200_000)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--quick", action="store_true", help="no latency, waiting, replay or limit phases")
    args = parser.parse_args()
    if args.quick:
        args.steady_seconds, args.waiting, args.replay_events = 0, 0, 0
    f = Figures()
    print(f"{args.transfers:,} transfers, {args.customers} customers x {args.subscriptions} sources, "
          f"{PARTITIONS} partitions, store: {args.store or 'SQLite'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, BundledBroker() as broker:
        vendor = VendorSim()
        try:
            bench_coterm(args, broker, vendor, Path(tmp), f)
            if not args.no_naive:
                bench_naive(args, broker, vendor, Path(tmp), f)
        finally:
            vendor.stop()
        if not args.quick:
            f.put("limit: store append events/s (100 per save)", append_rate(args.store and
                  f"{args.store}{'&' if '?' in args.store else '?'}schema=bench_append_{uuid.uuid4().hex[:6]}"
                  or str(Path(tmp) / "append.sqlite")))
        if args.replay_events:
            bench_replay(args, Path(tmp), f)
    print_table(f.rows)


def print_table(rows: dict[str, Any]) -> None:
    print("\n| figure | value |\n| --- | ---: |")
    for name, value in rows.items():
        print(f"| {name} | {value:,.1f} |" if isinstance(value, float) else f"| {name} | {value} |")
    coterm, naive = rows.get("coterm transfers/s"), rows.get("naive transfers/s")
    if coterm and naive:
        print(f"| coterm / naive | {coterm / naive:.2f}x |")
    limit = rows.get("limit: store append events/s (100 per save)")
    if coterm and limit:
        print(f"| coterm events/s / store append limit | {coterm * rows['coterm events/transfer'] / limit:.2f} |")


if __name__ == "__main__":
    main()
