"""Messages/s of the inbox on hostile input against clean input, printed (never asserted in tests).

  python -m bench.hostile [--messages N] [--store PATH_OR_URL]

The same inbox (parse, rules, one store transaction per 500-record batch) takes N clean
transfer halves, then N hostile messages (`tests/hostile.py`: the mix the fuzz tests send,
every one a dead letter or a duplicate). The issue's goal: hostile within 2x of clean.
"""

import argparse
import io
import tempfile
import time
from collections import namedtuple
from collections.abc import Sequence

from bench import workload
from processor.consume.inbox import Inbox
from processor.log_setup import configure_logging
from processor.store.opening import open_store
from tests.hostile import stream

Record = namedtuple("Record", "offset value")


def feed(inbox: Inbox, values: Sequence[bytes | None], first: int, batch: int = 500) -> float:
    started = time.perf_counter()
    for i in range(0, len(values), batch):
        inbox.process("orders", 0, [Record(first + i + n, v) for n, v in enumerate(values[i : i + batch])])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--store", help="default: a fresh SQLite file")
    args = parser.parse_args()
    configure_logging(io.StringIO())  # rendered as in production, kept off the terminal
    with tempfile.TemporaryDirectory() as tmp:
        app = open_store(args.store or f"{tmp}/hostile.sqlite")
        inbox = Inbox(app)
        reference = [m.value for m in workload.reference_data("h", 200, 5)]
        offset = len(reference)
        feed(inbox, reference, 0)
        clean = [m.value for m in workload.transfers("h", args.messages // 2, 200, 5)]
        clean_s = feed(inbox, clean, offset)
        offset += len(clean)
        hostile = [h.value for h in stream(seed=2026, count=args.messages)]
        hostile_s = feed(inbox, hostile, offset)
        app.close()
    clean_rate, hostile_rate = len(clean) / clean_s, len(hostile) / hostile_s
    size = sum(len(v or b"") for v in hostile) / 1e6
    print(f"| input | messages | msgs/s |\n| --- | ---: | ---: |\n| clean transfer halves | {len(clean):,} | {clean_rate:,.0f} |")
    print(f"| hostile ({size:.1f} MB, all dead letters or duplicates) | {len(hostile):,} | {hostile_rate:,.0f} |")
    print(f"hostile / clean: {hostile_rate / clean_rate:.2f}x (goal: at least 0.5x)")


if __name__ == "__main__":
    main()
