"""The cache that follows the log (`StoredOrders`): a process does not read its own writes back,
yet never misses another writer's, even one that lands between two of its own."""

from pathlib import Path

from aggregates import commands
from aggregates.subscription import Subscription
from processor.store.opening import open_store
from tests import seed


def seats(app, subscription_id: str) -> int:  # type: ignore[no-untyped-def]
    subscription = app.unit_of_work().get(Subscription, Subscription.create_id(subscription_id))
    return subscription.seats  # type: ignore[no-any-return]


def test_own_writes_are_skipped_and_others_are_read(tmp_path: Path) -> None:
    one, other = open_store(str(tmp_path / "s.sqlite")), open_store(str(tmp_path / "s.sqlite"))
    try:
        seed.customer_with_subscriptions(one, "c1", seats=10)
        assert seats(one, "c1-s1") == 10  # cached in `one`, its read position at the head
        seed.run(one, commands.resize_subscription, "c1-s1", 12, day="2026-11-03")
        head = one.process_recorder.max_notification_id()
        assert one._cache_position == head  # its own write: not read back
        assert seats(one, "c1-s1") == 12
        uow = one.unit_of_work()  # `one` reads the log up to here, then decides...
        commands.resize_subscription(uow, seed._ctx("2026-11-04"), "c1-epp", 7)
        seed.run(other, commands.resize_subscription, "c1-s1", 15, day="2026-11-04")  # ...another writer lands...
        one.commit(uow)  # ...and `one` records after it
        assert one._cache_position == head  # something in between: nothing skipped
        assert seats(one, "c1-s1") == 15  # the other writer's change reached `one`'s cache
        assert one._cache_position == one.process_recorder.max_notification_id()
    finally:
        one.close()
        other.close()


def test_an_idle_consumer_catches_its_cache_up_before_the_next_message(tmp_path: Path) -> None:
    """What another process recorded while no input came is read when the poll comes back empty,
    not before the next batch (which waited for it: 300-440 ms after a burst); a busy round
    leaves it to the batches."""
    from processor.consume.runner import _follow_log

    one, other = open_store(str(tmp_path / "s.sqlite")), open_store(str(tmp_path / "s.sqlite"))
    try:
        seed.customer_with_subscriptions(one, "c1", seats=10)
        assert seats(one, "c1-s1") == 10
        seed.run(other, commands.resize_subscription, "c1-s1", 15, day="2026-11-04")
        cached = one.repository.cache.get(Subscription.create_id("c1-s1"))  # type: ignore[union-attr]
        read = []
        _follow_log(one, [lambda limit: read.append(limit) or 0], busy=True)
        assert cached.seats == 10 and one._cache_position < one.process_recorder.max_notification_id()
        assert read == [2000]  # followers still run, in slices while input flows
        _follow_log(one, [], busy=False)
        assert cached.seats == 15  # the cached aggregate itself moved, without a unit of work
        assert one._cache_position == one.process_recorder.max_notification_id()
    finally:
        one.close()
        other.close()
