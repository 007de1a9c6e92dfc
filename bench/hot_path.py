"""CPU per transfer on coterm's own path, in one process, without a broker or an HTTP vendor.

  python -m bench.hot_path [--transfers 3000] [--store postgresql://...] [--prefill EVENTS] [--repeat 3]

`make bench` measures the whole pipeline, where the work of a transfer depends on timing (how
many messages a poll returns, how many calls an outbox round finds, version conflicts between
the two processes) and the machine drifts by 10-30% within an hour. This measures each lever
on the same work every time, and counts the statements sent to the database: the benchmark's
workload through the real inbox (batches of 500 records per partition, as a poll returns them),
then the real outbox (its own application and cache, as in its own process) with every vendor
call answered at once in-process, then the read models; CPU time of each phase, per transfer.
`--prefill` first grows the store to that many events through the same path (untimed): the cost
per transfer with history behind it.
"""

import argparse
import io
import json
import tempfile
import time
import zlib
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg._connection_base import BaseConnection  # psycopg's own commands (BEGIN, ROLLBACK, ...)
from eventsourcing.sqlite import SQLiteConnection, SQLiteCursor

from bench import workload
from bench.running import drop_schema, in_schema, shown
from processor import collector
from processor.consume.inbox import Inbox, Part, utc_now
from processor.log_setup import configure_logging
from processor.outbox.dispatch import Outbox
from processor.outbox.process import OUTBOX_CACHE_SIZE
from processor.outbox.vendor_answers import VendorOutcome, judged
from processor.outbox.vendor_client import VendorClient
from processor.store.opening import open_store
from projections.projection import Projection

Record = namedtuple("Record", "offset value")
PARTITIONS = 3
POLL = 500


class Statements:
    """Statements sent to the database: execute, executemany and commit calls of the library's
    SQLite cursor and connection; psycopg's execute and executemany, and the commands psycopg
    sends on its own (BEGIN, COMMIT, ROLLBACK, DEALLOCATE: its `_exec_command`), each a round
    trip outside pipeline mode. A figure the machine's drift does not move. Counted by wrapping
    those methods, in this benchmark's process only."""

    count = 0

    @classmethod
    def install(cls) -> None:
        for owner, names in ((SQLiteCursor, ("execute", "executemany")), (SQLiteConnection, ("commit",)),
                             (psycopg.Cursor, ("execute", "executemany")), (BaseConnection, ("_exec_command",))):
            for name in names:
                setattr(owner, name, cls._counting(getattr(owner, name)))

    @classmethod
    def _counting(cls, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            cls.count += 1
            return method(*args, **kwargs)
        return counted


class AnsweringVendor(VendorClient):
    """Every call accepted at once, on the calling thread: the client's own work (the body, the
    outcome judged from the answer) without a socket or its calls thread."""

    def submit(self, request: dict[str, Any], done: Callable[[VendorOutcome | None], None], key: str | None = None,
               may_send: Callable[[], bool] = lambda: True, trace: Any = None,
               on_start: Callable[[], None] | None = None) -> None:
        json.dumps(request, sort_keys=True).encode()
        if on_start is not None:
            on_start()
        op = request["operation_id"]
        done(judged(201, json.dumps({"vendor_reference": f"VND-{op}"}), {}, 1, 0, op))


class Published:
    def __init__(self) -> None:
        self.count = 0

    def publish(self, messages: list[Any]) -> None:
        self.count += len(messages)


class Pipeline:
    """The consumer's application and the outbox's, on one store, as `coterm run` has them."""

    def __init__(self, store: str) -> None:
        self.consumer = open_store(store)
        self.outbox_app = open_store(store, cache_size=OUTBOX_CACHE_SIZE)
        self.inbox = Inbox(self.consumer)
        self.published = Published()
        self.outbox = Outbox(self.outbox_app, self.published, AnsweringVendor("http://vendor.invalid"), 3600.0,
                             utc_now)
        self.projection = Projection(self.outbox_app)
        self.offsets = [self.inbox.resume_position("orders", p) or 0 for p in range(PARTITIONS)]  # a kept store's

    def consume(self, messages: list[workload.Message]) -> None:
        by_partition: list[list[Record]] = [[] for _ in range(PARTITIONS)]
        for m in messages:  # as Kafka's default partitioner spreads keys: one customer, one partition
            p = zlib.crc32(m.key.encode()) % PARTITIONS
            by_partition[p].append(Record(self.offsets[p], m.value))
            self.offsets[p] += 1
        polls = max(len(records) for records in by_partition)
        for start in range(0, polls, POLL):  # a poll's partitions together, as `coterm run` applies them
            self.inbox.process_poll([Part("orders", p, records[start : start + POLL]) for p, records in enumerate(by_partition)])

    def carry_out(self) -> None:
        """Outbox rounds until every call decided so far has its outcome recorded."""
        stop, idle_since = _Never(), time.monotonic()
        while True:
            self.outbox.follow_to_head(stop)
            worked = self.outbox.dispatch()
            self.outbox.follow_to_head(stop)
            if not worked and not self.outbox.in_flight and not self.outbox.calls:
                return
            if worked:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 60:  # a bench fails loudly rather than waits forever
                raise RuntimeError(f"the outbox is stuck: {len(self.outbox.calls)} calls open, "
                                   f"{len(self.outbox.waits_for)} waiting their turn, e.g. {next(iter(self.outbox.calls))}")
            else:
                time.sleep(0.001)

    def project(self) -> None:
        while self.projection.catch_up(limit=2000):
            pass

    def events(self) -> int:
        return self.consumer.process_recorder.max_notification_id() or 0

    def close(self) -> None:
        self.outbox.close()
        self.consumer.close()
        self.outbox_app.close()


class _Never:
    @staticmethod
    def is_set() -> bool:
        return False


def measure(pipeline: Pipeline, transfers: list[workload.Message], n: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    before, statements = pipeline.events(), Statements.count
    for phase, work in (("consumer", lambda: pipeline.consume(transfers)),
                        ("outbox", lambda: pipeline.carry_out()),
                        ("read models", pipeline.project)):
        cpu = time.process_time()  # every thread of the process
        work()
        figures[f"{phase} CPU us/transfer"] = (time.process_time() - cpu) * 1e6 / n
    figures["total CPU us/transfer"] = sum(figures.values())
    figures["events/transfer"] = (pipeline.events() - before) / n
    figures["statements/transfer"] = (Statements.count - statements) / n
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    workload.add_arguments(parser)
    parser.add_argument("--prefill", type=int, default=0, metavar="EVENTS", help="events stored first (untimed)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of --transfers measured, one after another")
    parser.add_argument("--first", type=int, default=0, help="number of the first transfer (to run on a kept store again)")
    parser.add_argument("--default-gc", action="store_true",
                        help="Python's own collector settings, not coterm's (`processor.collector`)")
    args = parser.parse_args()
    configure_logging(io.StringIO())  # rendered as in production, kept off the terminal
    Statements.install()
    if not args.default_gc:
        collector.tune()  # as `coterm run` and its outbox process do
    with tempfile.TemporaryDirectory() as tmp:
        store = in_schema(args.store or str(Path(tmp) / "hot.sqlite"), f"hot_{int(time.time() * 1000)}")
        pipeline = Pipeline(store)
        try:
            pipeline.consume(workload.reference_data("hot", args.customers, args.subscriptions))
            pipeline.project()
            print(f"{args.transfers:,} transfers a round, {args.customers} customers x {args.subscriptions} sources, "
                  f"store: {args.store or 'SQLite'}", flush=True)
            first = args.first
            empty = rounds(pipeline, args, first)
            first += args.repeat * args.transfers
            full: list[dict[str, float]] = []
            if args.prefill:
                while pipeline.events() < args.prefill:  # the same work, untimed, until the store holds that many
                    step = args.transfers
                    pipeline.consume(workload.transfers("hot", step, args.customers, args.subscriptions, first=first))
                    pipeline.carry_out()
                    pipeline.project()
                    first += step
                print(f"{pipeline.events():,} events stored", flush=True)
                full = rounds(pipeline, args, first)
        finally:
            pipeline.close()
            drop_schema(store)
    table(empty, full)


def rounds(pipeline: Pipeline, args: argparse.Namespace, first: int) -> list[dict[str, float]]:
    done = []
    for r in range(args.repeat):
        batch = workload.transfers("hot", args.transfers, args.customers, args.subscriptions, first=first)
        first += args.transfers
        done.append(measure(pipeline, batch, args.transfers))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {shown(k, v)}" for k, v in done[-1].items()), flush=True)
    return done


def table(empty: list[dict[str, float]], full: list[dict[str, float]]) -> None:
    def median(of: list[dict[str, float]], name: str) -> float:
        values = sorted(r[name] for r in of)
        return values[len(values) // 2]

    print("\n| figure (median of rounds) | empty store |" + (" prefilled | prefilled / empty |" if full else ""))
    print("| --- | ---: |" + (" ---: | ---: |" if full else ""))
    for name in empty[0]:
        line = f"| {name} | {shown(name, median(empty, name))} |"
        if full:
            line += f" {shown(name, median(full, name))} | {median(full, name) / median(empty, name):.2f} |"
        print(line)


if __name__ == "__main__":
    main()
