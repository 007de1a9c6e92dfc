"""Starting work through the API (issue 17): privileges first, the contract's own validation, one
order per idempotency key, 503 without a broker, and each order decided by the real processor."""

import json
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from aggregates import commands
from processor.dev.broker import free_port
from processor.kafka_io import read_topic
from processor.orders_out import KafkaOrders
from processor.settings import Settings
from projections.staff import Staff
from projections.submit import NoBroker, OrdersUnavailable
from tests import seed
from tests.harness import Scenario
from tests.http_server import call, serving
from tests.waiting import wait_for

ADMIN, SUPPORT, MIGRATOR = "admin-token-0123456789", "support-token-0123456789", "migrator-token-0123456789"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)  # c1-s1 ends 2027-01-04: in its renewal window
TRANSFER = {"subscription_id": "c1-s1", "seats": 3, "target": {"kind": "new_subscription", "plan_id": "plan-e5"}}


@pytest.fixture
def staff(tmp_path: Path) -> Staff:
    path = tmp_path / "staff.json"
    path.write_text(json.dumps({"roles": {"Support": [], "Partner Admin": ["Usage-Based Migration"]}, "users": [
        {"name": "alice", "token": ADMIN, "roles": ["Account Administrator"]},
        {"name": "bob", "token": SUPPORT, "roles": ["Support"]},
        {"name": "carol", "token": MIGRATOR, "roles": ["Partner Admin"]}]}))
    return Staff.load(str(path))


@pytest.fixture
def world(sqlite_scenario: Scenario) -> Scenario:
    return _seeded(sqlite_scenario)


@pytest.fixture
def any_world(scenario: Scenario) -> Scenario:
    """On SQLite and on PostgreSQL."""
    return _seeded(scenario)


def _seeded(s: Scenario) -> Scenario:
    """The harness's small world (`seed_reference_data`), written to the store directly: most tests
    here need no processor, and a processor start costs a group join."""
    app = s.open_store()
    seed.run(app, commands.define_product, "p1", "Elements EPP", True, True)
    seed.run(app, commands.define_product, "p2", "M365 E5", False, False)
    seed.run(app, commands.register_customer, "c1", partner_id="partner-1", name="Acme", channel="direct",
             distributor_id=None, data_complete=True)
    for sub, product, seats in (("c1-s1", "p1", 10), ("c1-t1", "p2", 5)):
        seed.run(app, commands.purchase_subscription, sub, "c1", product_id=product, plan_id=f"plan-{product}",
                 billing_model="annual", management="partner_managed", seats=seats, term_months=12,
                 start_date=date(2026, 1, 5), end_date=date(2027, 1, 4), subscription_key=f"KEY-{sub}",
                 resource_count=1, day="2026-01-05")
    app.close()
    return s


@pytest.fixture
def api(world: Scenario, staff: Staff) -> Iterator[str]:
    app = world.open_store()
    orders = KafkaOrders(world.settings)
    with serving(app, staff, orders=orders, clock=lambda: NOW) as url:
        yield url
    orders.close()
    app.close()


def on_topic(s: Scenario) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(s.bootstrap, s.settings.topic_orders) if r.value]


def placed(s: Scenario) -> list[dict[str, Any]]:
    return [m for m in on_topic(s) if m.get("source") == "coterm-api"]


WRITES = [("/api/transfers", TRANSFER), ("/api/migrations", {"customer_id": "c1", "product_ids": ["p1"]}),
          ("/api/bulk", {"partner_id": "partner-1", "product_ids": ["p1"], "all_customers_of_partner": True}),
          ("/api/bulk/b1/cancel", {"reason": "x"}), ("/api/deadletters/" + "0" * 32 + "/redrive", {"why": "x"})]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_who_may_place_orders_is_checked_before_the_body(api: str, world: Scenario, path: str, body: Any) -> None:
    assert call(api + path, "POST", body, key="k")[0] == 401
    assert call(api + path, "POST", b"{not json", key="k", token="nobody-0123456789abcdef")[0] == 401
    status, refused = call(api + path, "POST", b"{not json", key="k", token=SUPPORT)
    assert status == 403 and "bob lacks the" in refused["detail"]
    migrator = call(api + path, "POST", b"{not json", key="k", token=MIGRATOR)[0]
    # The migration privilege starts migrations and bulks; partial upgrades and re-drives need their own.
    assert migrator == (400 if path in ("/api/migrations", "/api/bulk", "/api/bulk/b1/cancel") else 403)
    assert placed(world) == []


@pytest.mark.parametrize(("path", "body", "error", "words"), [
    ("/api/transfers", {**TRANSFER, "seats": 0}, "INVALID_ORDER", "seats"),
    ("/api/transfers", {**TRANSFER, "target": {"kind": "new_subscription"}}, "BAD_PARAMETER", "plan_id"),
    ("/api/transfers", {**TRANSFER, "target": {"kind": "sideways", "plan_id": "x"}}, "BAD_PARAMETER", "kind"),
    ("/api/transfers", {**TRANSFER, "subscription_id": "nope"}, "INVALID_ORDER", "give customer_id"),
    ("/api/transfers", {**TRANSFER, "colour": "red"}, "BAD_PARAMETER", "colour"),
    ("/api/migrations", {"customer_id": "c1", "product_ids": []}, "INVALID_ORDER", "product_ids"),
    ("/api/migrations", {"customer_id": "", "product_ids": ["p1"]}, "INVALID_ORDER", "customer_id"),
    ("/api/bulk", {"partner_id": "partner-1", "product_ids": ["p1"], "customer_ids": ["c1"],
                   "all_customers_of_partner": True}, "INVALID_ORDER", "exactly one of customer_ids"),
    ("/api/bulk", {"partner_id": "partner-1", "product_ids": ["p1"]}, "INVALID_ORDER", "neither"),
])
def test_bad_orders_get_400_and_nothing_is_published(api: str, world: Scenario, path: str, body: Any,
                                                     error: str, words: str) -> None:
    status, answer = call(api + path, "POST", body, token=ADMIN, key="bad-1")
    assert (status, answer["error"]) == (400, error) and words in answer["detail"], answer
    assert placed(world) == []


def test_without_a_key_coterm_makes_one_and_says_so(api: str, world: Scenario) -> None:
    status, answer = call(api + "/api/transfers", "POST", TRANSFER, token=ADMIN)
    assert status == 202 and answer["idempotency_key"].startswith("generated-")
    again = call(api + "/api/transfers", "POST", TRANSFER, token=ADMIN, key=answer["idempotency_key"])[1]
    assert again == {**answer, "repeat": True}  # the returned key retries it safely
    assert call(api + "/api/transfers", "POST", TRANSFER, token=ADMIN)[1]["operation_id"] != answer["operation_id"]
    assert len(placed(world)) == 4  # two orders of two halves each
    status, bad = call(api + "/api/transfers", "POST", TRANSFER, token=ADMIN, key="x" * 201)
    assert (status, bad["error"]) == (400, "BAD_PARAMETER")


def test_callers_may_name_their_own_ids(api: str, world: Scenario) -> None:
    body = {**TRANSFER, "operation_id": "op-upstream-7", "customer_id": "c1",
            "target": {"kind": "new_subscription", "plan_id": "plan-e5", "new_subscription_id": "c1-new", "term_months": 12}}
    status, answer = call(api + "/api/transfers", "POST", body, token=ADMIN, key="k7")
    assert status == 202 and answer["operation_id"] == "op-upstream-7"
    assert placed(world)[1]["payload"]["target"]["new_subscription_id"] == "c1-new"


def test_the_same_key_places_one_order_and_another_request_under_it_is_refused(any_world: Scenario, staff: Staff) -> None:
    world, app, orders = any_world, any_world.open_store(), KafkaOrders(any_world.settings)
    with serving(app, staff, orders=orders, clock=lambda: NOW) as api:
        _one_order_per_key(api, world)
    orders.close()
    app.close()


def _one_order_per_key(api: str, world: Scenario) -> None:
    first = call(api + "/api/transfers", "POST", TRANSFER, token=ADMIN, key="double-click")
    again = call(api + "/api/transfers", "POST", TRANSFER, token=ADMIN, key="double-click")
    assert first[0] == again[0] == 202
    assert again[1] == {**first[1], "repeat": True} and first[1]["repeat"] is False
    assert first[1]["idempotency_key"] == "double-click"
    halves = placed(world)
    assert [m["type"] for m in halves] == ["transfer.downgrade_ordered", "transfer.upgrade_ordered"]  # once
    assert {m["payload"]["operation_id"] for m in halves} == {first[1]["operation_id"]}
    assert halves[0]["payload"]["requested_by"] == "alice" and halves[0]["occurred_at"] == "2026-11-02T12:00:00Z"
    target = halves[1]["payload"]["target"]
    assert target["product_id"] == "p1" and target["term_months"] == 12  # the source's, as the form implies
    status, reused = call(api + "/api/transfers", "POST", {**TRANSFER, "seats": 4}, token=ADMIN, key="double-click")
    assert (status, reused["error"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    other = call(api + "/api/transfers", "POST", TRANSFER, token=MIGRATOR, key="double-click")
    assert other[0] == 403  # keys are per user; and carol may not place transfers anyway
    world.process()
    # The API's read models follow the store on their own thread (about once a second): wait for them.
    op = wait_for(lambda: (o := call(f"{api}/api/operations/{first[1]['operation_id']}", token=ADMIN)[1])
                  and o["status"] == "completed" and o, 15, "the operation completed in the API's read model")
    assert op["seats"] == 3
    assert len(world.results_for(first[1]["operation_id"])) == 1


class _HalfThenCrash(KafkaOrders):
    """The real producer, failing after the first message of a submission: a crash between the halves."""

    def publish(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        super().publish(messages[:1])
        raise OrdersUnavailable("the server went down after the first half")


def test_a_pair_cut_by_a_crash_is_completed_under_the_same_ids_not_placed_twice(world: Scenario, staff: Staff) -> None:
    app = world.open_store()
    crashing, healthy = _HalfThenCrash(world.settings), KafkaOrders(world.settings)
    with serving(app, staff, orders=crashing, clock=lambda: NOW) as url:
        status, answer = call(url + "/api/transfers", "POST", TRANSFER, token=ADMIN, key="retry-after-timeout")
        assert (status, answer["error"]) == (503, "ORDERS_UNAVAILABLE")
    with serving(app, staff, orders=healthy, clock=lambda: NOW) as url:
        status, answer = call(url + "/api/transfers", "POST", TRANSFER, token=ADMIN, key="retry-after-timeout")
        assert status == 202 and answer["repeat"] is True
    halves = placed(world)
    assert [m["type"] for m in halves] == ["transfer.downgrade_ordered", "transfer.downgrade_ordered",
                                           "transfer.upgrade_ordered"]
    assert halves[0] == halves[1]  # the same bytes, the same message id: the processor takes it once
    world.process()
    assert [r["type"] for r in world.results_for(answer["operation_id"])] == ["transfer.completed"]
    for orders in (crashing, healthy):
        orders.close()
    app.close()


def test_without_a_broker_start_buttons_are_greyed_and_orders_answer_503(world: Scenario, staff: Staff) -> None:
    app = world.open_store()
    closed_port = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", store=world.store)
    for orders, words in ((NoBroker(), "COTERM_KAFKA_BOOTSTRAP is unset"), (KafkaOrders(closed_port), "no Kafka broker answered")):
        with serving(app, staff, orders=orders, clock=lambda: NOW) as url:
            status, me = call(url + "/api/me", token=ADMIN)
            assert status == 200 and me["orders"]["available"] is False and words in me["orders"]["detail"]
            assert me["user"] == "alice" and "Partial Upgrade" in me["privileges"]
            status, answer = call(url + "/api/migrations", "POST", {"customer_id": "c1", "product_ids": ["p1"]},
                                  token=ADMIN, key="m1")
            assert (status, answer["error"]) == (503, "ORDERS_UNAVAILABLE") and words in answer["detail"]
    assert placed(world) == []
    app.close()


def test_migration_bulk_and_redrive_placed_through_the_api_are_decided(api: str, world: Scenario) -> None:
    world.send("customer.registered", {"customer_id": "c2", "partner_id": "partner-1", "name": "Beta", "channel": "direct",
                                       "distributor_id": None, "data_complete": False})
    world.send_raw(b'{"type": "subscription.purchased"}', key="junk")  # a dead letter to re-drive
    world.process()
    status, preview = call(api + "/api/bulk/preview?partner=partner-1&product=p1", token=ADMIN)
    assert status == 200 and (preview["customers"], preview["migrate_now"]) == (2, 1)
    assert preview["refused_by_reason"] == {"INCOMPLETE_CUSTOMER_DATA": 1}
    status, migration = call(api + "/api/migrations", "POST", {"customer_id": "c1", "product_ids": ["p1", "p2"]},
                             token=MIGRATOR, key="m1")
    assert status == 202
    status, bulk = call(api + "/api/bulk", "POST", {"partner_id": "partner-1", "product_ids": ["p1"],
                                                    "customer_ids": ["c2"]}, token=MIGRATOR, key="b1")
    assert status == 202
    [letter] = call(api + "/api/deadletters", token=ADMIN)[1]["items"]
    path = f"{api}/api/deadletters/{letter['id']}/redrive"
    assert call(path, "POST", {"why": "upstream fixed it"}, token=MIGRATOR, key="r1")[0] == 403
    status, redriven = call(path, "POST", {"why": "upstream fixed it"}, token=ADMIN, key="r1")
    assert status == 202 and redriven["new_message_id"]
    assert call(path, "POST", {"why": "upstream fixed it"}, token=ADMIN, key="r1")[1]["repeat"] is True
    status, refused = call(path, "POST", {"why": "again, other reason"}, token=ADMIN, key="r2")
    assert (status, refused["error"]) == (409, "ALREADY_REDRIVEN")
    world.process()
    status, decided = call(api + migration["follow"], token=ADMIN)
    assert status == 200 and decided["decisions"][-1]["requested_by"] == "carol"
    [moved] = decided["decisions"][-1]["migrated"]
    assert (moved["subscription_id"], moved["subscription_key"]) == ("c1-s1", "KEY-c1-s1")  # the key is kept
    assert [r["reason_code"] for r in decided["decisions"][-1]["rejected"]] == ["PRODUCT_NOT_SUPPORTED"]
    status, b = call(api + bulk["follow"], token=ADMIN)
    assert status == 200 and b["requested_by"] == "carol" and b["status"] == "finished"
    status, cancel = call(f"{api}/api/bulk/{bulk['bulk_id']}/cancel", "POST", {"reason": "too late"}, token=MIGRATOR, key="c1")
    assert (status, cancel["error"]) == (409, "BULK_CLOSED")
    assert call(f"{api}/api/bulk/nope/cancel", "POST", {"reason": "x"}, token=MIGRATOR, key="c2")[0] == 404
    assert len([d for d in world.dead_letters()]) == 2  # the re-driven copy is still not a valid purchase
