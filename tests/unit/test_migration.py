"""Migration to usage-based: every reason code, the accepted paths and the boundary days."""

from datetime import date

import pytest

from tests.world import World


@pytest.fixture
def world() -> World:
    w = World()
    w.product("p1")
    w.product("p2")
    w.product("av", bundle=True)
    w.product("edr", bundle=True)
    w.product("legacy", supports=False)
    w.customer()
    return w


def only_rejection(migration):  # type: ignore[no-untyped-def]
    decision = migration.decisions[-1]
    assert decision["migrated"] == []
    return [(r["product_id"], r["reason_code"]) for r in decision["rejected"]]


def test_accepted_migration_keeps_keys_and_builds_bundle(world: World) -> None:
    world.purchase("s1", product_id="p1", end="2027-01-04")  # 64 days after the request: in window
    world.purchase("s2", product_id="p2", billing_model="monthly", end="2027-12-31")
    migration = world.migrate(["p1", "p2"], on="2026-11-01")
    decision = migration.decisions[-1]
    assert {(m["subscription_id"], m["subscription_key"]) for m in decision["migrated"]} == {("s1", "KEY-s1"), ("s2", "KEY-s2")}
    assert decision["rejected"] == []
    assert world.subscription("s1").billing_model == "usage_based"
    assert world.subscription("s1").subscription_key == "KEY-s1"
    bundle = {b["product_id"]: b["subscription_key"] for b in world.customer_state().bundle}
    assert bundle["p1"] == "KEY-s1" and bundle["p2"] == "KEY-s2"
    assert set(bundle) == {"p1", "p2", "av", "edr"}  # unrequested bundle products get new keys


def test_unrequested_bundle_keys_are_stable_for_the_request_id() -> None:
    keys = []
    for _ in range(2):
        w = World()
        w.product("p1")
        w.product("av", bundle=True)
        w.customer()
        w.purchase("s1", billing_model="monthly")
        keys.append(w.migrate(["p1"], on="2026-11-01", request_id="req-7").decisions[-1]["bundle"])
    assert keys[0] == keys[1]
    other = World()
    other.product("p1")
    other.product("av", bundle=True)
    other.customer()
    other.purchase("s1", billing_model="monthly")
    assert other.migrate(["p1"], on="2026-11-01", request_id="req-8").decisions[-1]["bundle"] != keys[0]


def test_customer_unknown_refuses_every_product(world: World) -> None:
    migration = world.migrate(["p1", "p2"], on="2026-11-01", customer_id="nobody")
    assert only_rejection(migration) == [("p1", "CUSTOMER_UNKNOWN"), ("p2", "CUSTOMER_UNKNOWN")]


def test_incomplete_customer_data(world: World) -> None:
    world.purchase("s1", billing_model="monthly")
    world.update_customer("c1", data_complete=False)
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "INCOMPLETE_CUSTOMER_DATA")]


@pytest.mark.parametrize("channel,distributor", [("two_tier", None), ("direct", "dist-9")])
def test_conflicting_relationship(channel: str, distributor: str | None) -> None:
    w = World()
    w.product("p1")
    w.customer(channel=channel, distributor_id=distributor)
    w.purchase("s1", billing_model="monthly")
    assert only_rejection(w.migrate(["p1"], on="2026-11-01")) == [("p1", "CONFLICTING_RELATIONSHIP")]


def test_two_tier_with_distributor_is_fine() -> None:
    w = World()
    w.product("p1")
    w.customer(channel="two_tier", distributor_id="dist-1")
    w.purchase("s1", billing_model="monthly")
    assert w.migrate(["p1"], on="2026-11-01").decisions[-1]["migrated"]


def test_second_migration_is_already_migrated(world: World) -> None:
    world.purchase("s1", billing_model="monthly")
    world.purchase("s2", product_id="p2", billing_model="monthly")
    world.migrate(["p1"], on="2026-11-01", request_id="r1")
    assert only_rejection(world.migrate(["p2"], on="2026-11-02", request_id="r2")) == [("p2", "ALREADY_MIGRATED")]


def test_product_not_supported_unknown_or_flagged(world: World) -> None:
    world.purchase("s1", product_id="legacy", billing_model="monthly")
    assert only_rejection(world.migrate(["legacy", "ghost"], on="2026-11-01")) == [
        ("legacy", "PRODUCT_NOT_SUPPORTED"), ("ghost", "PRODUCT_NOT_SUPPORTED")]


def test_company_managed(world: World) -> None:
    world.purchase("s1", billing_model="monthly", management="company_managed")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "COMPANY_MANAGED_NOT_SUPPORTED")]


def test_no_subscription_including_expired_ones(world: World) -> None:
    world.purchase("s1", billing_model="monthly", start="2025-01-01", end="2025-12-31")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "NO_SUBSCRIPTION")]


def test_duplicate_usage_subscription(world: World) -> None:
    world.purchase("s1", billing_model="monthly")
    world.purchase("s2", billing_model="usage_based", end="2030-01-01")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "DUPLICATE_USAGE_SUBSCRIPTION")]


def test_only_a_usage_based_subscription_is_a_duplicate_not_a_missing_one(world: World) -> None:
    world.purchase("s2", billing_model="usage_based", end="2030-01-01")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "DUPLICATE_USAGE_SUBSCRIPTION")]


def test_an_expired_usage_based_subscription_is_no_subscription(world: World) -> None:
    world.purchase("s2", billing_model="usage_based", start="2025-01-01", end="2025-12-31")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "NO_SUBSCRIPTION")]


def test_not_in_renewal_window_says_when_it_opens(world: World) -> None:
    world.purchase("s1", end="2027-06-30")
    migration = world.migrate(["p1"], on="2026-11-01")
    rejected = migration.decisions[-1]["rejected"][0]
    assert rejected["reason_code"] == "NOT_IN_RENEWAL_WINDOW"
    assert rejected["eligible_from"] == date(2027, 4, 1)
    assert "2027-06-30" in rejected["detail"] and "2027-04-01" in rejected["detail"]
    assert world.subscription("s1").billing_model == "annual"  # refused products stay as they were


def test_exactly_ninety_days_before_expiry_is_in_the_window(world: World) -> None:
    world.purchase("s1", end="2027-01-30")  # 2026-11-01 + 90 days
    assert world.migrate(["p1"], on="2026-11-01").decisions[-1]["migrated"]


def test_ninety_one_days_before_expiry_is_not(world: World) -> None:
    world.purchase("s1", end="2027-01-31")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01")) == [("p1", "NOT_IN_RENEWAL_WINDOW")]


def test_monthly_is_never_fixed_term(world: World) -> None:
    world.purchase("s1", billing_model="monthly", end="2030-12-31")
    assert world.migrate(["p1"], on="2026-11-01").decisions[-1]["migrated"]


def test_business_date_not_wall_clock(world: World) -> None:
    world.purchase("s1", end="2027-06-30")
    assert only_rejection(world.migrate(["p1"], on="2026-11-01", request_id="early")) == [("p1", "NOT_IN_RENEWAL_WINDOW")]
    assert world.migrate(["p1"], on="2027-04-01", request_id="later").decisions[-1]["migrated"]


def test_several_subscriptions_all_migrate_or_none(world: World) -> None:
    world.purchase("s1", end="2027-01-04")
    world.purchase("s2", end="2027-09-30")
    world.purchase("s3", product_id="p2", billing_model="monthly")
    migration = world.migrate(["p1", "p2"], on="2026-11-01")
    decision = migration.decisions[-1]
    assert [(r["product_id"], r["reason_code"]) for r in decision["rejected"]] == [("p1", "NOT_IN_RENEWAL_WINDOW")]
    assert [m["subscription_id"] for m in decision["migrated"]] == ["s3"]
    assert world.subscription("s1").billing_model == "annual"


def test_partial_acceptance_leaves_rejected_products_unbundled(world: World) -> None:
    world.purchase("s1", billing_model="monthly")
    world.purchase("s2", product_id="p2", management="company_managed", billing_model="monthly")
    bundle = world.migrate(["p1", "p2"], on="2026-11-01").decisions[-1]["bundle"]
    assert {b["product_id"] for b in bundle} == {"p1", "av", "edr"}


def test_all_rejected_creates_no_bundle(world: World) -> None:
    world.purchase("s1", end="2027-09-30")
    world.migrate(["p1"], on="2026-11-01")
    assert world.customer_state().bundle is None
