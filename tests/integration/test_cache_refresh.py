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
