"""Bulk migrations through Kafka (CONTRACT.md section 5): 1,000 customers whose renewal windows
open on different days, decided at once or on their day, across restarts, equal on replay."""

import json
from collections import Counter
from datetime import date, timedelta
from typing import Any

from aggregates.bulk import bulk_request_id
from projections.audit import replay
from projections.bulk_report import bulk_doc_from_store
from tests.harness import Scenario, envelope

BULK_DAY = date(2026, 11, 2)
CUSTOMERS = 1000
PARTNER = "partner-9"


def at(day: date) -> str:
    return f"{day.isoformat()}T09:00:00Z"


def end_of(i: int) -> date:
    # windows open from 60 days before the bulk (in window: migrated now) to 59 days after it
    return BULK_DAY + timedelta(days=30 + i % 120)


def opens(i: int) -> date:
    return end_of(i) - timedelta(days=90)


def seed(s: Scenario) -> None:
    messages: list[tuple[str, dict[str, Any], str, str]] = [
        ("catalog.product_defined", {"product_id": "epp", "name": "EPP", "supports_usage_based": True,
                                     "in_usage_bundle": False}, "epp", at(date(2025, 1, 1))),
        ("catalog.product_defined", {"product_id": "av", "name": "AV", "supports_usage_based": True,
                                     "in_usage_bundle": True}, "av", at(date(2025, 1, 1))),
    ]
    for i in range(CUSTOMERS):
        c = f"bc{i:04d}"
        messages.append(("customer.registered", {"customer_id": c, "partner_id": PARTNER, "name": f"Customer {i}",
                                                 "channel": "direct", "distributor_id": None,
                                                 "data_complete": i % 100 != 7}, c, at(date(2025, 6, 1))))
        messages.append(("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "epp", "plan_id": "plan-epp",
            "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
            "start_date": (end_of(i) - timedelta(days=364)).isoformat(), "end_date": end_of(i).isoformat(),
            "subscription_key": f"KEY-{c}"}, c, at(end_of(i) - timedelta(days=364))))
    s.send_many(messages)
    # Reference data first: it is keyed by customer, the bulk by partner, so on other partitions
    # they have no order between them (CONTRACT.md section 2).
    s.process(timeout_s=180)


def by_type(results: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [r for r in results if r["type"] == type_]


def test_a_bulk_of_1000_customers_waits_for_each_window(sqlite_scenario: Scenario) -> None:
    s = sqlite_scenario
    seed(s)
    customers = [f"bc{i:04d}" for i in range(CUSTOMERS)] + ["ghost"]
    bulk = s.send("migration.bulk_requested", {"bulk_id": "bulk-1", "partner_id": PARTNER, "requested_by": "partner@x",
                                               "product_ids": ["epp"], "customer_ids": customers},
                  key=PARTNER, occurred_at=at(BULK_DAY))
    s.process(timeout_s=180)

    results = s.results()
    accepted = by_type(results, "migration.bulk_accepted")
    assert len(accepted) == 1 and accepted[0]["causation_id"] == bulk["message_id"]
    assert accepted[0]["payload"]["customers"] == customers
    incomplete = {f"bc{i:04d}" for i in range(CUSTOMERS) if i % 100 == 7}
    waiting = {f"bc{i:04d}": opens(i) for i in range(CUSTOMERS) if opens(i) > BULK_DAY and f"bc{i:04d}" not in incomplete}
    assert {(x["customer_id"], x["product_id"], x["on"]) for x in accepted[0]["payload"]["scheduled"]} == {
        (c, "epp", day.isoformat()) for c, day in waiting.items()}
    assert len({x["on"] for x in accepted[0]["payload"]["scheduled"]}) == 59  # windows open on 59 different days

    first = {r["payload"]["customer_id"]: r for r in results if r["type"].startswith("migration.")
             and r["type"] not in ("migration.bulk_accepted", "migration.bulk_finished")}
    assert set(first) == set(customers)  # one result per customer, each under its own request id
    for c, result in first.items():
        assert result["payload"]["request_id"] == bulk_request_id("bulk-1", c)
        assert result["causation_id"] == bulk["message_id"]
        codes = [r["reason_code"] for r in result["payload"]["rejected"]]
        if c == "ghost":
            assert codes == ["CUSTOMER_UNKNOWN"]
        elif c in incomplete:
            assert codes == ["INCOMPLETE_CUSTOMER_DATA"]
        elif c in waiting:
            assert result["type"] == "migration.rejected" and codes == ["NOT_IN_RENEWAL_WINDOW"]
            assert result["payload"]["rejected"][0]["eligible_from"] == waiting[c].isoformat()
        else:
            assert result["type"] == "migration.completed" and codes == []
    assert not by_type(results, "migration.bulk_finished")

    # Day 20 arrives on a quiet stream: a tick. A restart in between loses no schedule.
    tick = s.send("clock.tick", {}, key=PARTNER, occurred_at=at(BULK_DAY + timedelta(days=20)))
    s.process(timeout_s=180)
    later = s.results()[len(results):]
    due = {c for c, day in waiting.items() if day <= BULK_DAY + timedelta(days=20)}
    assert {r["payload"]["customer_id"] for r in later} == due and len(later) == len(due)
    for r in later:
        c = r["payload"]["customer_id"]
        assert r["type"] == "migration.completed" and r["causation_id"] == tick["message_id"]
        assert r["payload"]["request_id"] == bulk_request_id("bulk-1", c, waiting[c])
        assert r["payload"]["migrated"] == [{"product_id": "epp", "subscription_id": f"{c}-s", "subscription_key": f"KEY-{c}"}]
        assert {b["product_id"] for b in r["payload"]["bundle"]} == {"epp", "av"}

    # Any message's date counts, not only ticks: a customer update dated after every window.
    s.send("customer.updated", {"customer_id": "bc0001", "name": "Renamed"}, occurred_at=at(BULK_DAY + timedelta(days=70)))
    s.process(timeout_s=180)
    final = s.results()
    finished = by_type(final, "migration.bulk_finished")
    assert len(finished) == 1 and finished[0]["payload"]["status"] == "finished"
    migrated_now = CUSTOMERS - len(incomplete) - len(waiting)
    assert finished[0]["payload"]["counts"] == {"migrated": migrated_now + len(waiting),
                                                "rejected": len(incomplete) + 1, "cancelled": 0}
    completed = Counter(r["payload"]["customer_id"] for r in final if r["type"] == "migration.completed")
    assert set(completed) == set(customers) - incomplete - {"ghost"} and set(completed.values()) == {1}
    assert len({r["message_id"] for r in final}) == len(final)  # no copies
    assert not s.dead_letters()

    app = s.open_store()
    try:
        doc = bulk_doc_from_store(app, "bulk-1")
        assert doc is not None and doc["status"] == "finished"
        assert doc["counts"] == {"migrated": migrated_now + len(waiting), "rejected": len(incomplete) + 1,
                                 "scheduled": 0, "cancelled": 0}
        report = replay(app, verify=True)  # the read models equal a replay of the events, byte for byte
        assert report["differences"] == []
    finally:
        app.close()


def test_bulk_inputs_cancel_and_all_customers_of_partner(scenario: Scenario) -> None:
    s = scenario
    s.send_many([
        ("catalog.product_defined", {"product_id": "epp", "name": "EPP", "supports_usage_based": True,
                                     "in_usage_bundle": False}, "epp", at(date(2025, 1, 1))),
        *[("customer.registered", {"customer_id": c, "partner_id": "pa", "name": c, "channel": "direct",
                                   "distributor_id": None, "data_complete": True}, c, at(date(2025, 6, 1)))
          for c in ("a1", "a2", "a3")],
        *[("subscription.purchased", {"subscription_id": f"{c}-s", "customer_id": c, "product_id": "epp",
                                      "plan_id": "plan-epp", "billing_model": "annual",
                                      "management": "partner_managed", "seats": 5, "term_months": 12,
                                      "start_date": "2026-03-01", "end_date": end, "subscription_key": f"K-{c}"},
           c, at(date(2026, 3, 1)))
          for c, end in (("a1", "2027-01-10"), ("a2", "2027-03-10"), ("a3", "2027-04-10"))],
    ])
    s.send("customer.updated", {"customer_id": "a3", "partner_id": "pb"}, occurred_at=at(date(2026, 10, 1)))
    s.process()  # reference data first: the bulk is keyed by partner, on another partition
    payload = {"bulk_id": "all-pa", "partner_id": "pa", "requested_by": "partner@x", "product_ids": ["epp"],
               "all_customers_of_partner": True}
    bulk = s.send("migration.bulk_requested", payload, key="pa", occurred_at=at(BULK_DAY))
    s.send("migration.bulk_requested", payload, key="pa", message_id=bulk["message_id"], occurred_at=at(BULK_DAY))
    s.send("migration.bulk_requested", payload, key="pa", occurred_at=at(BULK_DAY))  # same payload, new id
    bad = [
        {**payload, "product_ids": ["epp", "other"]},  # the bulk_id reused with another payload
        {**payload, "customer_ids": ["a1"]},  # both ways to name customers
        {k: v for k, v in payload.items() if k != "all_customers_of_partner"} | {"bulk_id": "x"},  # neither
        {**payload, "bulk_id": "y", "product_ids": []},
        {**payload, "bulk_id": "z", "all_customers_of_partner": False},
        {k: v for k, v in payload.items() if k != "all_customers_of_partner"} | {"bulk_id": "w", "customer_ids": []},
    ]
    for p in bad:
        s.send("migration.bulk_requested", p, key="pa", occurred_at=at(BULK_DAY))
    s.send("migration.bulk_cancelled", {"bulk_id": "never", "requested_by": "ops", "reason": "typo"}, key="pa",
           occurred_at=at(BULK_DAY))
    s.process()
    letters = s.dead_letters()
    assert Counter(d["reason"] for d in letters) == {"INVALID_PAYLOAD": len(bad), "UNKNOWN_REFERENCE": 1}
    assert sum("already used for another request" in d["error"] for d in letters) == 1
    accepted = by_type(s.results(), "migration.bulk_accepted")
    assert len(accepted) == 1 and accepted[0]["payload"]["customers"] == ["a1", "a2"]  # a3 moved to partner pb
    assert [x["customer_id"] for x in accepted[0]["payload"]["scheduled"]] == ["a2"]

    cancel = s.send("migration.bulk_cancelled", {"bulk_id": "all-pa", "requested_by": "ops", "reason": "on hold"},
                    key="pa", occurred_at=at(BULK_DAY + timedelta(days=1)))
    s.send("clock.tick", {}, key="pa", occurred_at=at(date(2027, 1, 1)))
    s.process()
    results = s.results()
    finished = by_type(results, "migration.bulk_finished")
    assert len(finished) == 1 and finished[0]["causation_id"] == cancel["message_id"]
    assert finished[0]["payload"] == {"bulk_id": "all-pa", "status": "cancelled",
                                      "counts": {"migrated": 1, "rejected": 0, "cancelled": 1}}
    assert not [r for r in results if r["payload"].get("customer_id") == "a2" and r["type"] == "migration.completed"]


def test_the_same_input_into_a_fresh_store_reaches_the_same_decisions(broker, vendor, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Replay from the input: the same messages (same ids and dates) into a fresh store and fresh
    topics give the same results, payload for payload, however the processor batched them."""
    customers = 100
    reference: list[tuple[str, dict[str, Any], str, str]] = [
        ("catalog.product_defined", {"product_id": "epp", "name": "EPP", "supports_usage_based": True,
                                     "in_usage_bundle": True}, "epp", at(date(2025, 1, 1)))]
    for i in range(customers):
        c = f"rc{i:03d}"
        reference.append(("customer.registered", {"customer_id": c, "partner_id": "pr", "name": c, "channel": "direct",
                                                  "distributor_id": None, "data_complete": True}, c, at(date(2025, 6, 1))))
        reference.append(("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "epp", "plan_id": "plan-epp",
            "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
            "start_date": (end_of(i) - timedelta(days=364)).isoformat(), "end_date": end_of(i).isoformat(),
            "subscription_key": f"KEY-{c}"}, c, at(end_of(i) - timedelta(days=364))))
    bulk = ("migration.bulk_requested", {"bulk_id": "again", "partner_id": "pr", "requested_by": "partner@x",
                                         "product_ids": ["epp"], "all_customers_of_partner": True}, "pr", at(BULK_DAY))
    ticks = [[("clock.tick", {}, "pr", at(BULK_DAY + timedelta(days=d)))] for d in (25, 70)]
    phases = [reference, [bulk], *ticks]
    envelopes = [[(envelope(t, p, occurred_at=o), k) for t, p, k, o in phase] for phase in phases]

    def play(run: int) -> list[str]:
        s = Scenario(broker.bootstrap, str(tmp_path / f"run-{run}.sqlite"), vendor.url)
        for phase in envelopes:
            for message, key in phase:
                s.producer.send(s.settings.topic_orders, value=json.dumps(message).encode(), key=key.encode())
            s.producer.flush()
            s.process(timeout_s=120)
        return sorted(json.dumps([r["type"], r["causation_id"], r["payload"]], sort_keys=True) for r in s.results())

    first = play(1)
    assert sum('"migration.bulk_finished"' in r for r in first) == 1 and len(first) > customers
    assert play(2) == first


def test_a_bulk_published_with_its_reference_data_waits_for_it(sqlite_scenario: Scenario) -> None:
    """Everything in one burst: customers on partitions 1 and 2, the bulk and a tick on partition
    0. The processor holds the bulk back until the other partitions are read as far as they
    had been written when it came, so no customer is refused for not being known yet."""
    s = sqlite_scenario
    customers = 400
    s.send("catalog.product_defined", {"product_id": "epp", "name": "EPP", "supports_usage_based": True,
                                       "in_usage_bundle": False}, partition=1, occurred_at=at(date(2025, 1, 1)))
    for i in range(customers):
        c = f"bb{i:03d}"
        s.send("customer.registered", {"customer_id": c, "partner_id": "pz", "name": c, "channel": "direct",
                                       "distributor_id": None, "data_complete": True},
               partition=1 + i % 2, flush=False, occurred_at=at(date(2025, 6, 1)))
        s.send("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "epp", "plan_id": "plan-epp",
            "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
            "start_date": "2026-01-01", "end_date": (BULK_DAY + timedelta(days=60 + i % 60)).isoformat(),
            "subscription_key": f"K-{c}"}, partition=1 + i % 2, flush=False, occurred_at=at(date(2026, 1, 1)))
    s.producer.flush()
    s.send("migration.bulk_requested", {"bulk_id": "burst", "partner_id": "pz", "requested_by": "x",
                                        "product_ids": ["epp"], "all_customers_of_partner": True},
           partition=0, occurred_at=at(BULK_DAY))
    s.send("clock.tick", {}, partition=0, occurred_at=at(BULK_DAY + timedelta(days=40)))
    s.process(timeout_s=180)
    results = s.results()
    accepted = by_type(results, "migration.bulk_accepted")
    assert len(accepted) == 1 and len(accepted[0]["payload"]["customers"]) == customers
    completed = {r["payload"]["customer_id"] for r in results if r["type"] == "migration.completed"}
    assert completed == {f"bb{i:03d}" for i in range(customers)}  # at once, or on day 30 or 40 via the tick
    assert by_type(results, "migration.bulk_finished")[0]["payload"]["counts"] == {
        "migrated": customers, "rejected": 0, "cancelled": 0}
