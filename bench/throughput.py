"""Throughput of coterm's hot path, printed as figures and ratios (never asserted in tests).

  python -m bench.throughput [--customers N] [--postgres URL]

Measures: parsing alone, the inbox (parse + rules + one store transaction per 500-record
batch) on SQLite and PostgreSQL, and the outbox publishing results (to an in-process sink,
so the store is what is measured). Peak memory is reported by tracemalloc.
"""

import argparse
import io
import tempfile
import time
import tracemalloc
import uuid
from collections import namedtuple
from datetime import datetime, timezone
from typing import Any

from bench.running import in_schema
from contracts.parsing import parse_message
from processor.consume.inbox import Inbox
from processor.dev.demo_stream import build_stream
from processor.log_setup import configure_logging
from processor.outbox.dispatch import Outbox
from processor.outbox.results import Outbound
from processor.store.opening import open_store

Record = namedtuple("Record", "offset value")


class Sink:
    def __init__(self) -> None:
        self.count = 0

    def publish(self, messages: list[Outbound]) -> None:
        self.count += len(messages)


def records(customers: int) -> list[Record]:
    stream = build_stream(customers, seed=1)
    return [Record(i, m.value) for i, m in enumerate(stream.reference + stream.orders)]


def bench_parse(recs: list[Record]) -> float:
    started = time.perf_counter()
    for r in recs:
        parse_message(r.value)
    return len(recs) / (time.perf_counter() - started)


def bench_store(store: str, recs: list[Record], batch: int = 500) -> dict[str, Any]:
    app = open_store(store)
    inbox = Inbox(app)
    tracemalloc.start()
    started = time.perf_counter()
    for i in range(0, len(recs), batch):
        inbox.process("bench", 0, recs[i : i + batch])
    inbox_rate = len(recs) / (time.perf_counter() - started)
    sink = Sink()
    outbox = Outbox(app, sink, None, 900, time_now)
    started = time.perf_counter()
    while outbox.follow():
        pass
    outbox_rate = sink.count / max(time.perf_counter() - started, 1e-9)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    app.close()
    return {"inbox": inbox_rate, "outbox": outbox_rate, "results": sink.count, "peak_mb": peak / 1e6}


def time_now() -> Any:
    return datetime.now(timezone.utc)


def main() -> None:
    configure_logging(io.StringIO())  # JSON lines rendered as in production, kept off the terminal
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    recs = records(args.customers)
    print(f"{len(recs)} messages from {args.customers} customers (demo stream)\n")
    parse_rate = bench_parse(recs)
    rows = [("parse only", parse_rate, None, None)]
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = bench_store(f"{tmp}/bench.sqlite", recs)
    rows.append(("inbox, SQLite", sqlite["inbox"], sqlite["outbox"], sqlite["peak_mb"]))
    try:
        pg = bench_store(in_schema(args.postgres, f"bench_{uuid.uuid4().hex[:8]}"), recs)
        rows.append(("inbox, PostgreSQL", pg["inbox"], pg["outbox"], pg["peak_mb"]))
    except Exception as error:  # noqa: BLE001 - a bench without PostgreSQL still reports SQLite
        print(f"(PostgreSQL skipped: {error})")
    base = rows[1][1]
    print(f"{'path':<20} {'msgs/s':>10} {'µs/msg':>8} {'results/s':>10} {'peak MB':>8} {'vs SQLite':>10}")
    for name, rate, out, peak in rows:
        print(f"{name:<20} {rate:>10,.0f} {1e6 / rate:>8.1f} {out or 0:>10,.0f} {peak or 0:>8.1f} {rate / base:>9.2f}x")


if __name__ == "__main__":
    main()
