"""What one outbox round records in the store: the vendor's answers, the turns of the calls that may
go now, the calls to show as `sent`. In transactions of at most `CHUNK` operations, in that order,
each on fresh state (`Orders.decide`).

Why chunks: the consumer records new transfers on the same source subscriptions meanwhile, and a
write of either that the other got first fails the whole transaction; every aggregate it changed
then leaves the cache (they hold changes never recorded) and is rebuilt from the store for the
next attempt. One transaction for a burst's round of 600 answers failed seven times in a row in
`make bench`, each time rebuilding hundreds of subscriptions and customers. The consumer of the
same `coterm run` now takes turns at writing with this process (`processor.store.write_turns`),
and each chunk is one turn: short, so the consumer's next batch does not wait long. Against other
processors on the store a chunk still meets fewer writes than a whole round, and one that fails
costs only its own rework; one that fails twice is split in two (as the consumer splits its batches).
A chunk's answers free their subscriptions for the turns of the next. Each chunk that
conflicted says so in one line with the attempts it lost (`outbox.chunk_conflicted`); the
consumer says so for each attempt of a batch that lost (`batch.conflicted`): `make bench` counts both.
"""

from typing import Any

import structlog

from aggregates import transfer_commands
from aggregates.application import KeptConflicting
from aggregates.transfer import Transfer
from processor.outbox.vendor_client import VendorOutcome
from processor.store.stored_orders import StoredOrders

log = structlog.get_logger("coterm.outbox")

CHUNK = 100  # operations a transaction records
DECIDE_ATTEMPTS = 20


def decide_round(app: StoredOrders, fence: Any, done: dict[str, VendorOutcome], candidates: list[str],
                 slow: list[str]) -> dict[str, "transfer_commands.Turn | None"]:
    """Record `done`, give `candidates` their turn (None: no call awaited any more), mark `slow`
    sent; returns the turns. Raises what the store raised, with the earlier chunks recorded."""
    work = [*(("answer", op) for op in done), *(("turn", op) for op in candidates), *(("sent", op) for op in slow)]
    turns: dict[str, transfer_commands.Turn | None] = {}
    for start in range(0, len(work), CHUNK):
        turns.update(_decide_chunk(app, fence, work[start : start + CHUNK], done))
    return turns


def _decide_chunk(app: StoredOrders, fence: Any, chunk: list[tuple[str, str]],
                  outcomes: dict[str, VendorOutcome]) -> dict[str, "transfer_commands.Turn | None"]:
    """One transaction; after two that conflicted, two smaller ones (as the consumer's batches do):
    a shorter one meets fewer of the consumer's writes. One operation alone is tried on and on."""
    answered = {op: outcomes[op] for kind, op in chunk if kind == "answer"}
    taking = [op for kind, op in chunk if kind == "turn"]
    marking = [op for kind, op in chunk if kind == "sent"]
    turns: dict[str, transfer_commands.Turn | None] = {}
    tried = 0

    def change(uow: Any) -> None:
        nonlocal tried
        tried += 1
        turns.clear()
        # The chunk's transfers in one query, not one each (those the cache lacks: a burst of
        # thousands of decided calls outgrows it).
        uow.load_many(Transfer, [Transfer.create_id(op) for op in [*answered, *taking, *marking]])
        transfer_commands.load_touched(uow, [*answered, *taking], customers=list(answered))
        for op, outcome in answered.items():
            _record(uow, op, outcome)
        for op in taking:
            turns[op] = transfer_commands.take_turn(uow, op)
        for op in marking:
            transfer_commands.mark_vendor_call_sent(uow, op)

    try:
        app.decide(change, attempts=DECIDE_ATTEMPTS if len(chunk) == 1 else 2, fence=fence)
    except KeptConflicting:
        log.info("outbox.chunk_conflicted", operations=len(chunk), lost=tried, action="split")
        middle = len(chunk) // 2
        return {**_decide_chunk(app, fence, chunk[:middle], outcomes), **_decide_chunk(app, fence, chunk[middle:], outcomes)}
    if tried > 1:  # every attempt but the last lost to another writer
        log.info("outbox.chunk_conflicted", operations=len(chunk), lost=tried - 1)
    return turns


def _record(uow: Any, op: str, outcome: VendorOutcome) -> None:
    if outcome.ok:
        assert outcome.vendor_reference is not None
        transfer_commands.record_vendor_success(uow, op, outcome.vendor_reference, outcome.attempts, outcome.latency_ms)
    else:
        assert outcome.reason_code is not None
        transfer_commands.record_vendor_failure(uow, op, outcome.reason_code, outcome.detail, outcome.retryable,
                                               outcome.attempts)
