"""Bad input is dead-lettered and processing goes on; redelivery changes nothing; migrations answer."""

import base64
import json

import pytest

from aggregates.application import Orders
from processor.dev.vendor_sim import VendorSimulator
from tests.harness import Scenario, downgrade, envelope, seed_reference_data, upgrade


def event_count(app: Orders) -> int:
    return app.recorder.max_notification_id() or 0


def test_each_kind_of_bad_input_is_dead_lettered_and_processing_goes_on(scenario: Scenario) -> None:
    seed_reference_data(scenario)
    good = envelope("subscription.resized", {"subscription_id": "c1-s1", "seats": 11})
    bad = {
        "INVALID_JSON": b"\xff\xfenot json",
        "INVALID_ENVELOPE": json.dumps({**good, "occurred_at": "2026-11-01T10:00:00"}).encode(),
        "UNKNOWN_TYPE": json.dumps(envelope("order.teleported", {})).encode(),
        "UNSUPPORTED_SCHEMA_VERSION": json.dumps({**envelope("subscription.resized", {}), "schema_version": 2}).encode(),
        "INVALID_PAYLOAD": json.dumps(envelope("subscription.resized", {"subscription_id": "c1-s1", "seats": 0})).encode(),
        "UNKNOWN_REFERENCE": json.dumps(envelope("subscription.resized", {"subscription_id": "ghost", "seats": 2})).encode(),
    }
    for raw in bad.values():
        scenario.send_raw(raw, key="c1")
    scenario.send_raw(None, key="c1")  # a tombstone has no value at all
    scenario.send_raw(json.dumps(good).encode(), key="c1")
    scenario.process()
    letters = scenario.dead_letters()
    tombstones = [letter for letter in letters if letter["original"] == ""]
    assert [t["reason"] for t in tombstones] == ["INVALID_JSON"]
    by_reason = {letter["reason"]: letter for letter in letters if letter["original"]}
    assert set(by_reason) == set(bad)
    assert len(letters) == len(bad) + 1
    for reason, raw in bad.items():
        letter = by_reason[reason]
        assert base64.b64decode(letter["original"]) == raw
        assert letter["topic"] == scenario.settings.topic_orders and letter["error"]
        assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    app = scenario.open_store()
    from aggregates.subscription import Subscription
    assert app.repository.get(Subscription.create_id("c1-s1")).seats == 11  # the good message after them applied


def test_redelivered_messages_and_batches_change_nothing(scenario: Scenario, vendor: VendorSimulator) -> None:
    seed_reference_data(scenario)
    down = scenario.send("transfer.downgrade_ordered", downgrade("redo"))
    up = scenario.send("transfer.upgrade_ordered", upgrade("redo"))
    bad = envelope("subscription.resized", {"subscription_id": "c1-s1", "seats": -1})
    scenario.send_raw(json.dumps(bad).encode(), key="c1")
    scenario.process()
    app = scenario.open_store()
    before = event_count(app)
    app.close()
    # The whole batch again, same message ids, other partitions: seen, so ignored.
    for message in (down, up, bad):
        for partition in (0, 1):
            scenario.send_raw(json.dumps(message).encode(), partition=partition)
    scenario.process()
    app = scenario.open_store()
    assert event_count(app) == before  # seen message ids: no new events at all
    assert len(scenario.results_for("redo")) == 1
    assert len(scenario.dead_letters()) == 1
    assert len(vendor.state.requests) == 1


def test_store_positions_survive_a_new_consumer_group(scenario: Scenario, vendor: VendorSimulator) -> None:
    seed_reference_data(scenario)
    scenario.send("transfer.downgrade_ordered", downgrade("pos"))
    scenario.send("transfer.upgrade_ordered", upgrade("pos"))
    scenario.process()
    scenario.with_settings(group_id=scenario.settings.group_id + "-again")  # Kafka knows no offsets for it
    scenario.process()
    assert len(scenario.results_for("pos")) == 1
    assert len(vendor.state.requests) == 1


def test_migrations_answer_with_per_product_reasons(scenario: Scenario) -> None:
    seed_reference_data(scenario)
    scenario.send("catalog.product_defined", {"product_id": "edr", "name": "EDR", "supports_usage_based": True,
                                              "in_usage_bundle": True}, key="c1")
    scenario.send("catalog.product_defined", {"product_id": "ub", "name": "Usage only", "supports_usage_based": True,
                                              "in_usage_bundle": False}, key="c1")
    scenario.send("subscription.purchased", {"subscription_id": "c1-ub", "customer_id": "c1", "product_id": "ub",
                                             "plan_id": "plan-ub", "billing_model": "usage_based",
                                             "management": "partner_managed", "seats": 1, "term_months": 1,
                                             "start_date": "2026-01-05", "end_date": "2030-01-04",
                                             "subscription_key": "KEY-c1-ub"}, occurred_at="2026-01-05T09:00:00Z")
    scenario.send("migration.requested", {"request_id": "m1", "customer_id": "c1",
                                          "product_ids": ["p1", "p2", "edr", "ub"],
                                          "requested_by": "partner"})
    scenario.send("migration.requested", {"request_id": "m2", "customer_id": "c1", "product_ids": ["p1"],
                                          "requested_by": "partner"})
    scenario.send("migration.requested", {"request_id": "m3", "customer_id": "nobody", "product_ids": ["p1"],
                                          "requested_by": "partner"})
    scenario.process()
    first = scenario.results_for("m1")[0]
    assert first["type"] == "migration.completed"
    assert first["payload"]["migrated"] == [{"product_id": "p1", "subscription_id": "c1-s1", "subscription_key": "KEY-c1-s1"}]
    assert {r["product_id"]: r["reason_code"] for r in first["payload"]["rejected"]} == {
        "p2": "PRODUCT_NOT_SUPPORTED", "edr": "NO_SUBSCRIPTION",
        "ub": "DUPLICATE_USAGE_SUBSCRIPTION"}  # its only active subscription is already usage-based
    assert [b["product_id"] for b in first["payload"]["bundle"]] == ["p1"]  # edr was requested, so not added
    second = scenario.results_for("m2")[0]
    assert second["type"] == "migration.rejected"
    assert second["payload"]["rejected"][0]["reason_code"] == "ALREADY_MIGRATED"
    assert scenario.results_for("m3")[0]["payload"]["rejected"][0]["reason_code"] == "CUSTOMER_UNKNOWN"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_renewal_window_refusal_says_when_it_opens(scenario: Scenario) -> None:
    seed_reference_data(scenario)
    scenario.send("migration.requested", {"request_id": "early", "customer_id": "c1", "product_ids": ["p1"],
                                          "requested_by": "partner"}, occurred_at="2026-09-01T10:00:00Z")
    scenario.process()
    rejected = scenario.results_for("early")[0]["payload"]["rejected"][0]
    assert (rejected["reason_code"], rejected["eligible_from"]) == ("NOT_IN_RENEWAL_WINDOW", "2026-10-06")
