"""The processes, topics and measurements `bench.pipeline` runs: the vendor simulator in its own
process, per-run topics, a watcher of results, `coterm run` as a child, latency and RSS readings."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from eventsourcing.utils import get_topic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from psycopg import sql

from aggregates.transfer import Transfer
from bench import workload
from processor.dev.broker import free_port
from processor.kafka_io import ensure_topics
from processor.outbox.process import OUTBOX
from processor.outbox.read_model_process import READ_SIDE
from processor.store.opening import open_store
from projections.projection import read_models

PARTITIONS = 3
COTERM = [sys.executable, "-m", "processor.cli.coterm"]


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


def _tree(pid: int) -> list[int]:
    """A process and its live children (`coterm run`, its outbox and read-model processes)."""
    return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children."""
    total = 0
    for p in _tree(pid):
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process and its live children have used."""
    return sum(cpu_by_process(pid).values())


PROCESSES = {OUTBOX: "outbox", READ_SIDE: "read models"}  # by the name each gives itself (/proc comm)


def cpu_by_process(pid: int) -> dict[str, float]:
    """User + system CPU of a process ("consumer": `coterm run` itself) and of each of its live
    children by the name it gives itself (`process_life.name_process`): "outbox", "read models"
    (any other child, e.g. an idle resource tracker, counts with the outbox)."""
    ticks = {"consumer": 0, "outbox": 0, "read models": 0}
    for p in _tree(pid):
        utime, stime = _times(p)
        ticks[_role(p, pid)] += utime + stime
    return {name: n / os.sysconf("SC_CLK_TCK") for name, n in ticks.items()}


def _role(p: int, run_pid: int) -> str:
    """Which of `coterm run`'s processes `p` is, by the name each gives itself."""
    return "consumer" if p == run_pid else PROCESSES.get(Path(f"/proc/{p}/comm").read_text().strip(), "outbox")


def system_seconds(pid: int) -> float:
    """The kernel's part of `cpu_seconds` (system calls: locks between threads, sockets, files)."""
    return sum(_times(p)[1] for p in _tree(pid)) / os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime in ticks (fields 14, 15)


def shown(name: str, value: Any) -> str:
    """A figure as the benches print it: CPU per transfer (a few ms) and statements per transfer
    (well under one with `bench.hot_path`'s batches of 500) to two decimals, where one would hide
    a tenth of them; other floats to one."""
    if not isinstance(value, float):
        return str(value)
    fine = ("coterm CPU ms", "  of which", "naive CPU ms", "statements")
    return f"{value:,.2f}" if name.startswith(fine) else f"{value:,.1f}"


def in_schema(store: str, schema: str) -> str:
    """A PostgreSQL store URL in a schema of its own (dropped afterwards: `drop_schema`); any other
    store as it is."""
    return f"{store}{'&' if '?' in store else '?'}schema={schema}" if store.startswith("postgresql://") else store


def drop_schema(store: str | None) -> None:
    """A bench's PostgreSQL schema dropped when its figures are taken: each run left tens of MB
    behind (3.4 GB after a few sessions), and a bloated database is not the one users run."""
    if not store or not store.startswith("postgresql://"):
        return
    schema = parse_qs(urlsplit(store).query).get("schema", [None])[0]
    if schema:
        with psycopg.connect(store.split("?")[0], autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


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

    def wait_settled(self, timeout_s: float = 300, quiet_s: float = 1.0) -> None:
        """Until the store's head has not moved for `quiet_s` and the read models have reached it:
        what a burst left behind is done (outcomes recorded, results out, read models current), so
        a phase after it measures steady state, not the burst's tail."""
        deadline = time.monotonic() + timeout_s
        recorder, tables = self.app.process_recorder, read_models(self.app)
        head, since = -1, time.monotonic()
        while True:
            now = recorder.max_notification_id() or 0
            if now != head:
                head, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s and (tables.max_tracking_id("rm.projection") or 0) >= head:
                return
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"coterm did not settle in time; its log ends:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        self.log.flush()
        return "".join(Path(self.log.name).read_text().splitlines(keepends=True)[-15:])

    def events(self) -> int:
        """The log's last notification id."""
        return self.app.process_recorder.max_notification_id() or 0

    def events_after(self, position: int) -> int:
        """Events recorded after this notification id, counted: on PostgreSQL ids have gaps (a
        transaction that rolled back, e.g. one that conflicted, used up the ids it drew)."""
        count, start = 0, position + 1
        while page := self.app.process_recorder.select_notifications(start=start, limit=10_000):
            count += len(page)
            start = page[-1].id + 1
        return count

    def conflicts(self) -> int:
        """Transactions of either process that lost to the other's write (and were done again), in
        its log so far: a `batch.conflicted` line each (consumer), the `lost` of each
        `outbox.chunk_conflicted` line (one line for all the attempts of a chunk)."""
        lost = 0
        for line in Path(self.log.name).read_text().splitlines():
            if '"batch.conflicted"' in line:
                lost += 1
            elif '"outbox.chunk_conflicted"' in line:
                lost += json.loads(line)["lost"]
        return lost

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.app.close()
        self.log.close()


def pairing_latencies_ms(app: Any, sent_at: dict[str, float], after: int) -> list[float]:
    out = []
    start = after + 1
    while True:
        page = app.process_recorder.select_notifications(
            start=start, limit=1000, topics=[get_topic(Transfer.VendorCallRequested), get_topic(Transfer.Opened)])
        if not page:
            return out
        for n in page:
            event = app.mapper.to_domain_event(n)
            if isinstance(event, Transfer.Opened) and event.call is None:
                continue  # opened waiting for its pair; an Opened with `call` recorded both halves and the call
            if event.operation_id in sent_at:
                out.append((event.timestamp.timestamp() - sent_at[event.operation_id]) * 1000)
        start = page[-1].id + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")




# -- profiles (`bench.pipeline --profile DIR`) ---------------------------------------------------
class Profiles:
    """py-spy attached to each of coterm's processes (not the resource tracker) while a phase runs;
    each writes `DIR/<process>.raw` (collapsed stacks) and its heaviest functions are printed."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out, self.spies = pid, out, {}  # type: ignore[var-annotated]

    def __enter__(self) -> "Profiles":
        self.out.mkdir(parents=True, exist_ok=True)
        for p in _tree(self.pid):
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
            if b"resource_tracker" in cmdline:
                continue
            name = _role(p, self.pid).replace(" ", "_")
            self.spies[name] = subprocess.Popen(
                [shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy", "record", "--pid", str(p), "--rate", "200", "--format", "raw", "--nonblocking",
                 "--output", str(self.out / f"{name}.raw")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *_: object) -> None:
        for name, spy in self.spies.items():
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            print(f"\nprofile of coterm's {name} process ({self.out / f'{name}.raw'}), inclusive share:")
            for share, function in heaviest(self.out / f"{name}.raw"):
                print(f"  {share:5.1f}%  {function}")


def heaviest(raw: Path, top: int = 25) -> list[tuple[float, str]]:
    """The functions on the most sampled stacks of a py-spy raw file, each counted once a stack."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        for function in {frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0]
                         for frame in stack.split(";")}:
            counts[function] = counts.get(function, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(100 * n / max(total, 1), function) for function, n in ranked]
