"""A store of many events for the replay figure, written in-process (no broker, no HTTP):
the benchmark's workload through the real inbox, each vendor call recorded as a success."""

import io
from collections import namedtuple

from aggregates import transfer_commands
from bench import workload
from processor.consume.inbox import Inbox
from processor.log_setup import configure_logging
from processor.store.opening import open_store

Record = namedtuple("Record", "offset value")


def build_store(store: str, events: int, batch: int = 500) -> int:
    """Grow the store until it holds at least `events` events; returns how many it holds."""
    configure_logging(io.StringIO())  # the inbox's lines, rendered as in production, kept off the terminal
    app = open_store(store)
    inbox = Inbox(app)
    offset = 0

    def feed(messages: list[workload.Message]) -> None:
        nonlocal offset
        for i in range(0, len(messages), batch):
            records = [Record(offset + n, m.value) for n, m in enumerate(messages[i : i + batch])]
            offset += len(records)
            inbox.process("replay-bench", 0, records)
            ops = sorted({m.operation_id for m in messages[i : i + batch] if m.operation_id})
            uow = app.unit_of_work()
            for op in ops:
                transfer_commands.record_vendor_success(uow, op, f"VND-{op}", 1, 1)
            app.commit(uow)

    feed(workload.reference_data("replay", 200, 5))
    first = 0
    while (app.process_recorder.max_notification_id() or 0) < events:
        feed(workload.transfers("replay", 2000, 200, 5, first=first))
        first += 2000
    total = app.process_recorder.max_notification_id() or 0
    app.close()
    return total
