"""`UnitOfWork.load_many`: many aggregates in one query equal the repository's one-by-one load."""

from uuid import uuid4

import pytest

from aggregates import commands
from aggregates.customer import Customer
from aggregates.subscription import Subscription
from processor.store.opening import open_store
from tests import seed


def test_load_many_equals_the_repository(store: str) -> None:
    app = open_store(store)
    try:
        seed.customer_with_subscriptions(app, "c1")
        seed.run(app, commands.register_customer, "c2", partner_id="p", name="c2", channel="direct",
                 distributor_id=None, data_complete=False)
        seed.run(app, commands.resize_subscription, "c1-s1", 120)
        seed.run(app, commands.request_migration, "m1", "c1", ["p1"], "partner", day="2027-04-02")
        ids = [Customer.create_id(c) for c in ("c1", "c2", "nobody")]
        subscriptions = [Subscription.create_id(s) for s in ("c1-s1", "c1-epp")]
        fresh = open_store(store)  # an empty cache: everything comes from the store
        try:
            uow = fresh.unit_of_work()
            uow.load_many(Customer, ids)
            uow.load_many(Subscription, subscriptions)
            for aggregate_id in [*ids[:2], *subscriptions]:
                loaded = uow.get(Customer if aggregate_id in ids else Subscription, aggregate_id)
                assert loaded is not None and vars(loaded) == vars(app.repository.get(aggregate_id))
            assert uow.get(Customer, ids[2]) is None  # known to be missing without another query
            assert uow.get(Subscription, Subscription.create_id("c1-epp")).billing_model == "usage_based"  # its history
            with pytest.raises(TypeError):
                fresh.unit_of_work().load_many(Subscription, [ids[0]])
            fresh.unit_of_work().load_many(Customer, [uuid4() for _ in range(1200)])  # several chunks, none there
        finally:
            fresh.close()
    finally:
        app.close()


def test_load_many_starts_at_the_latest_snapshot(store: str) -> None:
    """An aggregate with a snapshot is rebuilt from it and the events after it, one without from
    all its events, in the same query; either way it equals the repository's load."""
    app = open_store(store)
    try:
        seed.customer_with_subscriptions(app, "c1")
        for seats in range(101, 331):  # 230 resizes: snapshots at versions 100 and 200
            seed.run(app, commands.resize_subscription, "c1-s1", seats)
        busy, quiet = Subscription.create_id("c1-s1"), Subscription.create_id("c1-epp")
        table = app.snapshots.recorder.events_table_name  # type: ignore[union-attr]
        rows = app.recorder.events_of([busy, quiet], snapshots=table)  # type: ignore[attr-defined]
        of_busy = [r for r in rows if r.originator_id == busy]
        assert of_busy[0].originator_version == 200 and "Snapshot" in of_busy[0].topic
        assert [r.originator_version for r in of_busy[1:]] == list(range(201, of_busy[-1].originator_version + 1))
        assert [r.originator_version for r in rows if r.originator_id == quiet][0] == 1
        fresh = open_store(store)
        try:
            uow = fresh.unit_of_work()
            uow.load_many(Subscription, [busy, quiet])
            for aggregate_id in (busy, quiet):
                assert vars(uow.get(Subscription, aggregate_id)) == vars(app.repository.get(aggregate_id))
            assert uow.get(Subscription, busy).seats == 330
        finally:
            fresh.close()
    finally:
        app.close()


def test_a_snapshot_taken_from_the_recorded_aggregate_equals_the_rebuilt_one(store: str) -> None:
    """Snapshots are taken from the aggregate just recorded (the library rebuilt it from the
    store): each holds what rebuilding the aggregate to its version holds."""
    app = open_store(store)
    try:
        seed.customer_with_subscriptions(app, "c1")
        for seats in range(101, 331):
            seed.run(app, commands.resize_subscription, "c1-s1", seats)
        busy = Subscription.create_id("c1-s1")
        snapshots = list(app.snapshots.get(busy))  # type: ignore[union-attr]
        assert [s.originator_version for s in snapshots] == [100, 200]
        for snapshot in snapshots:
            rebuilt = vars(app.repository.get(busy, version=snapshot.originator_version))
            taken = vars(snapshot.mutate(None))
            assert taken == rebuilt
            assert taken["seats"] == 99 + snapshot.originator_version  # purchased with 100 at version 1, +1 a resize
    finally:
        app.close()
