"""The inbox against a real store: redelivered batches and poison messages."""

import json
from collections import namedtuple
from datetime import datetime, timezone

from processor.consume import translate
from processor.consume.inbox import Inbox
from tests.harness import envelope

Record = namedtuple("Record", "offset value")  # what the inbox reads of a kafka-python ConsumerRecord


def record(offset: int, type_: str, payload: dict) -> Record:
    return Record(offset, json.dumps(envelope(type_, payload)).encode())


def test_a_batch_delivered_twice_is_applied_once(app) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(app)
    batch = [record(0, "catalog.product_defined", {"product_id": "p", "name": "P", "supports_usage_based": True,
                                                   "in_usage_bundle": False}),
             Record(1, b"garbage")]
    assert inbox.process("t", 0, batch) == 2
    head = app.recorder.max_notification_id()
    assert inbox.process("t", 0, batch) == 0  # the stored position says: seen
    assert app.recorder.max_notification_id() == head
    assert inbox.resume_position("t", 0) == 2


def product(offset: int, product_id: str) -> Record:
    return record(offset, "catalog.product_defined", {"product_id": product_id, "name": product_id,
                                                      "supports_usage_based": True, "in_usage_bundle": False})


def bomb_breaks_processing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Product "bomb" makes its handler raise: a bug in coterm, not bad input."""
    original = translate.HANDLERS["catalog.product_defined"]

    def explode(uow, ctx, payload):  # type: ignore[no-untyped-def]
        if payload.product_id == "bomb":
            raise KeyError("a bug in a handler")
        return original(uow, ctx, payload)

    monkeypatch.setitem(translate.HANDLERS, "catalog.product_defined", explode)


def test_a_message_that_breaks_processing_is_dead_lettered_and_the_rest_applied(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(app)
    bomb_breaks_processing(monkeypatch)
    batch = [product(n, pid) for n, pid in enumerate(["a", "bomb", "c"])]
    assert inbox.process("t", 0, batch) == 3
    assert inbox.stats.dead_letters == 1 and inbox.resume_position("t", 0) == 3
    from aggregates.catalog import Catalog
    assert set(app.repository.get(Catalog.create_id()).products) == {"a", "c"}


def _half(offset: int, op: str) -> Record:
    return record(offset, "transfer.downgrade_ordered", {"operation_id": op, "order_id": f"{op}-down",
                                                        "customer_id": "c", "subscription_id": "s", "seats": 1,
                                                        "requested_by": "t"})


def test_many_batches_record_their_message_ids_and_positions_together(app) -> None:  # type: ignore[no-untyped-def]
    # On PostgreSQL the seen-message rows, the tracking record and the events go through one
    # pipelined transaction per batch (a result read from the wrong statement once crashed the
    # bench's processor; this does not reproduce that race, it guards the path).
    inbox = Inbox(app)
    offset = 0
    for size in [1, 2, 1, 10, 1, 3] * 5:  # batches of one record too: one seen row, one tracking row
        assert inbox.process("t", 0, [_half(offset + n, f"op-{offset + n}") for n in range(size)]) == size
        offset += size
    assert inbox.resume_position("t", 0) == offset
    assert inbox.stats.duplicates == 0 and inbox.stats.dead_letters == 0


def test_a_message_id_seen_on_another_partition_changes_nothing(app, store) -> None:  # type: ignore[no-untyped-def]
    from processor.store.opening import open_store

    first = _half(0, "op-x")
    again = Record(7, first.value)  # the same message, redelivered on another partition
    assert Inbox(app).process("t", 0, [first]) == 1
    head = app.recorder.max_notification_id()
    other = open_store(store)  # another processor on the same store
    try:
        inbox = Inbox(other)
        assert inbox.process("t", 1, [again]) == 1 and inbox.stats.duplicates == 1
        assert other.recorder.max_notification_id() == head
    finally:
        other.close()


def test_each_process_sees_what_another_wrote_through_its_cache(app, store) -> None:  # type: ignore[no-untyped-def]
    from aggregates import commands
    from aggregates.subscription import Subscription
    from processor.store.opening import open_store
    from tests.seed import customer_with_subscriptions

    customer_with_subscriptions(app)
    sub_id = Subscription.create_id("c1-s1")
    assert app.unit_of_work().get(Subscription, sub_id).seats == 100  # now cached here
    other = open_store(store)
    try:
        uow = other.unit_of_work()
        ctx = commands.Context("m-resize", datetime(2026, 3, 1, tzinfo=timezone.utc), datetime.now(timezone.utc))
        commands.resize_subscription(uow, ctx, "c1-s1", 120)
        other.commit(uow)
    finally:
        other.close()
    assert app.unit_of_work().get(Subscription, sub_id).seats == 120  # brought forward from the log, not stale


def test_a_big_batch_takes_a_turn_at_writing_and_a_small_one_writes_optimistically(app) -> None:  # type: ignore[no-untyped-def]
    """`coterm run`'s consumer takes turns with its outbox only for batches where a conflict would
    throw much work away (`TURN_AT_RECORDS`); a few records arriving as they are published do not
    wait for the outbox's turn (pairing latency)."""
    from contextlib import contextmanager

    from processor.consume.inbox import TURN_AT_RECORDS

    turns: list[int] = []

    @contextmanager
    def turn():  # type: ignore[no-untyped-def]
        turns.append(app.recorder.max_notification_id() or 0)
        yield

    app.turn = turn
    inbox = Inbox(app)
    products = [record(n, "catalog.product_defined", {"product_id": f"p{n}", "name": "P", "supports_usage_based": True,
                                                      "in_usage_bundle": False}) for n in range(TURN_AT_RECORDS + 3)]
    assert inbox.process("t", 0, products[:3]) == 3
    assert turns == []
    assert inbox.process("t", 0, products) == TURN_AT_RECORDS  # the 3 applied before are skipped
    assert len(turns) == 1


def _commits(app) -> list[int]:  # type: ignore[no-untyped-def]
    """Count the application's commits (each one transaction), leaving them to do their work."""
    counted: list[int] = []
    commit = app.commit

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        counted.append(1)
        return commit(*args, **kwargs)

    app.commit = counting
    return counted


def test_a_poll_of_several_partitions_is_one_transaction_with_a_position_for_each(app) -> None:  # type: ignore[no-untyped-def]
    from processor.consume.inbox import Part

    inbox = Inbox(app)
    assert inbox.process("t", 1, [_half(0, "op-early")]) == 1  # partition 1 was read up to 1 before
    commits = _commits(app)
    parts = [Part("t", 0, [_half(0, "op-a"), _half(1, "op-b")]),
             Part("t", 1, [_half(0, "op-early"), _half(1, "op-c")]),  # redelivered first record: skipped
             Part("t", 2, []), Part("t", 3, [_half(5, "op-d")])]
    assert inbox.process_poll(parts) == 4
    assert len(commits) == 1
    assert [inbox.resume_position("t", p) for p in range(4)] == [2, 2, None, 6]
    assert inbox.stats.duplicates == 0
    assert inbox.process_poll(parts) == 0 and len(commits) == 1  # the whole poll again: nothing new, nothing written


def test_a_poll_moves_the_business_date_to_its_latest_message_whichever_partition_held_it(app) -> None:  # type: ignore[no-untyped-def]
    from aggregates.calendar import Calendar
    from processor.consume.inbox import Part

    def half(offset: int, op: str, day: str) -> Record:
        payload = json.loads(_half(offset, op).value)
        return Record(offset, json.dumps({**payload, "occurred_at": f"2026-11-{day}T10:00:00Z"}).encode())

    inbox = Inbox(app)
    assert inbox.process_poll([Part("t", 0, [half(0, "op-a", "03")]), Part("t", 1, [half(0, "op-b", "09")]),
                               Part("t", 2, [half(0, "op-c", "05")])]) == 3
    assert str(app.repository.get(Calendar.create_id()).today) == "2026-11-09"


def test_a_big_poll_goes_one_partition_at_a_time_each_a_turn_at_writing(app) -> None:  # type: ignore[no-untyped-def]
    # A burst's polls hold hundreds of records: one turn for the whole poll would hold the
    # outbox off as long as all its partitions take.
    from contextlib import contextmanager

    from processor.consume.inbox import TURN_AT_RECORDS, Part

    turns: list[int] = []

    @contextmanager
    def turn():  # type: ignore[no-untyped-def]
        turns.append(1)
        yield

    app.turn = turn
    commits = _commits(app)
    inbox = Inbox(app)
    half = TURN_AT_RECORDS  # each partition's records take a turn, as a batch of that size always did
    parts = [Part("t", p, [_half(n, f"op-{p}-{n}") for n in range(half)]) for p in range(3)]
    assert inbox.process_poll(parts) == 3 * half
    assert len(commits) == 3 and len(turns) == 3
    assert [inbox.resume_position("t", p) for p in range(3)] == [half] * 3


def test_the_same_message_on_two_partitions_of_one_poll_is_applied_once(app) -> None:  # type: ignore[no-untyped-def]
    from processor.consume.inbox import Part

    inbox = Inbox(app)
    first = _half(3, "op-x")
    assert inbox.process_poll([Part("t", 0, [first]), Part("t", 1, [Record(9, first.value)])]) == 2
    assert inbox.stats.duplicates == 1
    assert (inbox.resume_position("t", 0), inbox.resume_position("t", 1)) == (4, 10)


def test_a_record_that_breaks_a_poll_sends_each_partition_alone(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from aggregates.catalog import Catalog
    from processor.consume.inbox import Part

    bomb_breaks_processing(monkeypatch)
    inbox = Inbox(app)
    parts = [Part("t", 0, [product(0, "a"), product(1, "b")]), Part("t", 1, [product(0, "bomb"), product(1, "c")])]
    assert inbox.process_poll(parts) == 4
    assert inbox.stats.dead_letters == 1
    assert (inbox.resume_position("t", 0), inbox.resume_position("t", 1)) == (2, 2)
    assert set(app.repository.get(Catalog.create_id()).products) == {"a", "b", "c"}


def test_a_poll_that_conflicts_with_another_processor_is_read_again_whole(app, store) -> None:  # type: ignore[no-untyped-def]
    # Between the poll's reads and its commit, another processor (after a rebalance) applies
    # partition 1's records: the poll's transaction fails on partition 1's position and records
    # nothing; the poll is then read again whole, partition 1 found applied and skipped.
    from structlog.testing import capture_logs

    from processor.consume.inbox import Part
    from processor.store.opening import open_store

    inbox = Inbox(app)
    theirs = [_half(0, "op-theirs")]
    other = open_store(store)
    commit = app.commit

    def commit_after_another_wrote(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not Inbox(other).resume_position("t", 1):
            assert Inbox(other).process("t", 1, theirs) == 1
        return commit(*args, **kwargs)

    app.commit = commit_after_another_wrote
    try:
        head = None
        with capture_logs() as logs:
            assert inbox.process_poll([Part("t", 0, [_half(0, "op-ours")]), Part("t", 1, theirs)]) == 1
        assert [line["event"] for line in logs if line["event"].startswith("poll.")] == ["poll.conflicted"]
        head = app.recorder.max_notification_id()
        assert inbox.stats.duplicates == 0  # partition 1 was skipped by its position, not re-applied
        assert (inbox.resume_position("t", 0), inbox.resume_position("t", 1)) == (1, 1)
        assert inbox.process_poll([Part("t", 0, [_half(0, "op-ours")]), Part("t", 1, theirs)]) == 0
        assert app.recorder.max_notification_id() == head
    finally:
        other.close()


def test_a_poll_that_lost_a_subscription_to_another_writer_finds_it_again_in_one_read(app, store) -> None:  # type: ignore[no-untyped-def]
    # A pair decided in one poll holds seats on its source; between the poll's reads and its
    # commit another writer resizes that source, so the commit loses on the source's version and
    # the aggregates it changed leave the cache. The retry finds them back in the cache, rebuilt
    # together (`Orders.reload`), not each through the repository (two queries apiece).
    from aggregates import commands
    from aggregates.subscription import Subscription
    from processor.consume.inbox import Part
    from processor.store.opening import open_store
    from tests import seed

    seed.customer_with_subscriptions(app, "c1")
    source = Subscription.create_id("c1-s1")
    down = record(0, "transfer.downgrade_ordered", {"operation_id": "o1", "order_id": "o1-down", "customer_id": "c1",
                                                    "subscription_id": "c1-s1", "seats": 2, "requested_by": "t"})
    up = record(0, "transfer.upgrade_ordered", {"operation_id": "o1", "order_id": "o1-up", "customer_id": "c1",
                                                "seats": 2, "requested_by": "t", "target": {
                                                    "kind": "new_subscription", "new_subscription_id": "o1-new",
                                                    "product_id": "nce", "plan_id": "plan-e5", "term_months": 12}})
    other = open_store(store)
    commit, select, rebuilt = app.commit, app.recorder.select_events, []

    def commit_after_another_wrote(*args, **kwargs):  # type: ignore[no-untyped-def]
        if other.repository.get(source).seats == 100:
            seed.run(other, commands.resize_subscription, "c1-s1", 120)
        return commit(*args, **kwargs)

    def select_counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        rebuilt.append(kwargs.get("originator_id", args[0] if args else None))  # one aggregate the cache lacked
        return select(*args, **kwargs)

    app.commit, app.recorder.select_events = commit_after_another_wrote, select_counted
    try:
        assert Inbox(app).process_poll([Part("t", 0, [down]), Part("t", 1, [up])]) == 2
        fresh = open_store(store, cached=False)
        after = fresh.repository.get(source)
        fresh.close()
        assert after.seats == 120 and after.in_flight == {"o1": 2}  # the resize and the hold, both recorded
        assert source not in rebuilt
    finally:
        other.close()
