"""A store of many events for the replay figure and the filled store's burst, written in-process
(no broker, no HTTP): the benchmark's workload through the real inbox, each vendor call recorded
as a success."""

import io
from collections import namedtuple

from eventsourcing.persistence import Tracking

from aggregates import transfer_commands
from bench import workload
from processor.consume.inbox import Inbox
from processor.log_setup import configure_logging
from processor.outbox.dispatch import RESULTS_TRACKING, WORK_TRACKING
from processor.store.opening import open_store
from projections.projection import Projection

Record = namedtuple("Record", "offset value")


def build_store(store: str, events: int, batch: int = 500, project: bool = False) -> int:
    """Grow the store until it holds at least `events` events; returns how many it holds.
    `project`: its read models brought to the head too, as a running coterm keeps them."""
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
    # As a store that has run: its results published and no vendor call pending (every call was
    # recorded a success above), so a `coterm run` on it starts at the head, not with a backlog.
    for name in (RESULTS_TRACKING, WORK_TRACKING):
        app.insert_tracking_once(Tracking(name, total))
    if project:
        Projection(app).run_to_end()
    app.close()
    return total
