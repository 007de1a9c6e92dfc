"""Partial seat transfer: pairing in either order, every reason code, co-terming and outcomes."""

import pytest

from tests.world import World, existing_target, new_target


@pytest.fixture
def world() -> World:
    w = World().products_and_customer()
    w.customer("c2")
    w.purchase("s1", seats=10, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    w.purchase("t1", product_id="p2", seats=5, start="2026-02-01", end="2027-01-31", on="2026-02-01")
    return w


def outcome(world: World, op: str) -> tuple[str, str | None]:
    t = world.transfer(op)
    return t.status, (t.outcome or {}).get("reason_code")


@pytest.mark.parametrize("first", ["downgrade", "upgrade"])
def test_pairs_in_either_order_and_requests_one_vendor_call(world: World, first: str) -> None:
    if first == "downgrade":
        assert world.downgrade("op").status == "waiting_for_pair"
        world.upgrade("op")
    else:
        assert world.upgrade("op").status == "waiting_for_pair"
        world.downgrade("op")
    t = world.transfer("op")
    assert t.status == "paired"
    assert t.vendor_request == {
        "operation_id": "op", "customer_id": "c1",
        "source": {"subscription_id": "s1", "seats_before": 10, "seats_after": 7},
        "target": {"kind": "new_subscription", "subscription_id": "s-new", "plan_id": "plan-p2",
                   "seats_before": 0, "seats_after": 3, "start_date": "2026-01-05",
                   "renewal_date": "2027-01-04", "billing_start_date": "2026-11-02"},
        "seats": 3,
    }


def test_completion_moves_seats_once_into_a_cotermed_subscription(world: World) -> None:
    world.downgrade("op")
    world.upgrade("op")
    assert world.vendor_ok("op") is True
    assert world.vendor_ok("op") is False  # a second outcome changes nothing
    assert world.subscription("s1").seats == 7
    new = world.subscription("s-new")
    assert (new.seats, new.start_date.isoformat(), new.end_date.isoformat()) == (3, "2026-01-05", "2027-01-04")
    assert new.billing_start_date.isoformat() == "2026-11-02"
    assert new.billing_model == "annual" and new.management == "partner_managed"
    assert new.subscription_key != "KEY-s1"
    assert "s-new" in world.customer_state().subscription_ids


def test_existing_target_keeps_its_terms(world: World) -> None:
    world.downgrade("op")
    world.upgrade("op", target=existing_target("t1"))
    assert world.transfer("op").vendor_request["target"] == {
        "kind": "existing_subscription", "subscription_id": "t1", "seats_before": 5, "seats_after": 8}
    world.vendor_ok("op")
    assert (world.subscription("s1").seats, world.subscription("t1").seats) == (7, 8)
    assert world.subscription("t1").end_date.isoformat() == "2027-01-31"


def test_rules_use_the_later_halfs_date(world: World) -> None:
    world.resize("s1", 12, on="2026-11-02")  # upsized on the 2nd
    world.downgrade("op", on="2026-11-01")
    world.upgrade("op", on="2026-11-02")
    assert outcome(world, "op") == ("rejected", "SAME_DAY_AS_UPSIZE")


def test_day_after_purchase_is_allowed(world: World) -> None:
    world.purchase("s9", seats=4, start="2026-10-31", end="2027-10-30", on="2026-10-31")
    world.downgrade("op", subscription_id="s9", seats=1)
    world.upgrade("op", seats=1)
    assert world.transfer("op").status == "paired"


@pytest.mark.parametrize(
    "setup,code",
    [
        (dict(down=dict(subscription_id="nope")), "SUBSCRIPTION_UNKNOWN"),
        (dict(up=dict(target=existing_target("nope"))), "SUBSCRIPTION_UNKNOWN"),
        (dict(down=dict(on="2027-02-01"), up=dict(on="2027-02-01")), "SUBSCRIPTION_UNKNOWN"),  # source expired
        (dict(up=dict(customer_id="c2")), "CUSTOMER_MISMATCH"),
        (dict(up=dict(seats=4)), "SEAT_COUNT_MISMATCH"),
        (dict(down=dict(seats=10), up=dict(seats=10)), "INSUFFICIENT_SEATS"),
        (dict(down=dict(seats=11), up=dict(seats=11)), "INSUFFICIENT_SEATS"),
        (dict(up=dict(target=new_target("s-new", term_months=1))), "TERM_LENGTH_MISMATCH"),
    ],
)
def test_refusals(world: World, setup: dict, code: str) -> None:
    world.downgrade("op", **setup.get("down", {}))
    world.upgrade("op", **setup.get("up", {}))
    assert outcome(world, "op") == ("rejected", code)


def test_target_of_another_customer_is_a_mismatch(world: World) -> None:
    world.purchase("x1", customer_id="c2", seats=5)
    world.downgrade("op")
    world.upgrade("op", target=existing_target("x1"))
    assert outcome(world, "op") == ("rejected", "CUSTOMER_MISMATCH")


def test_multi_resource_plan(world: World) -> None:
    world.purchase("m1", seats=10, resource_count=2, on="2026-01-05")
    world.downgrade("op", subscription_id="m1")
    world.upgrade("op")
    assert outcome(world, "op") == ("rejected", "MULTI_RESOURCE_PLAN")


def test_same_day_as_purchase_by_start_date_or_purchase_day(world: World) -> None:
    world.purchase("late", seats=10, start="2026-01-05", end="2027-01-04", on="2026-11-01")  # bought today, backdated
    world.downgrade("op1", subscription_id="late")
    world.upgrade("op1")
    assert outcome(world, "op1") == ("rejected", "SAME_DAY_AS_PURCHASE")
    world.purchase("fresh", seats=10, start="2026-11-03", end="2027-11-02", on="2026-10-01")
    world.downgrade("op2", subscription_id="fresh", on="2026-11-03")
    world.upgrade("op2", target=new_target("s-x"), on="2026-11-03")
    assert outcome(world, "op2") == ("rejected", "SAME_DAY_AS_PURCHASE")


def test_term_length_mismatch_for_existing_target(world: World) -> None:
    world.purchase("t36", product_id="p2", seats=5, term_months=36, start="2026-01-01", end="2028-12-31")
    world.downgrade("op")
    world.upgrade("op", target=existing_target("t36"))
    assert outcome(world, "op") == ("rejected", "TERM_LENGTH_MISMATCH")


def test_duplicate_half_is_refused_and_the_first_stands(world: World) -> None:
    world.downgrade("op", seats=3)
    t = world.downgrade("op", seats=4, order_id="other-order")
    assert t.status == "waiting_for_pair"
    world.upgrade("op", seats=3)
    assert world.transfer("op").vendor_request["seats"] == 3


def test_same_order_resent_under_new_message_id_is_a_no_op(world: World) -> None:
    world.downgrade("op")
    version = world.transfer("op").version
    world.downgrade("op")
    assert world.transfer("op").version == version


def test_late_half_after_close_is_operation_closed(world: World) -> None:
    world.downgrade("op", seats=10)
    world.upgrade("op", seats=10)
    assert outcome(world, "op") == ("rejected", "INSUFFICIENT_SEATS")
    world.upgrade("op", seats=10)  # the same order again
    t = world.upgrade("op", seats=2, order_id="again")  # a different one: table order names DUPLICATE_HALF first
    assert t.status == "rejected"
    assert _refusals(world, "op") == ["OPERATION_CLOSED", "DUPLICATE_HALF"]


def test_cancel_before_any_half_closes_the_operation(world: World) -> None:
    assert world.cancel("op").status == "cancelled"
    world.downgrade("op")
    assert _refusals(world, "op") == ["OPERATION_CLOSED"]


def test_cancel_waiting_then_cancel_again(world: World) -> None:
    world.downgrade("op")
    assert world.cancel("op").status == "cancelled"
    world.cancel("op")
    assert _refusals(world, "op") == ["OPERATION_CLOSED"]


def test_cancel_after_vendor_call_requested_is_already_sent(world: World) -> None:
    world.downgrade("op")
    world.upgrade("op")
    assert world.cancel("op").status == "paired"
    assert _refusals(world, "op") == ["ALREADY_SENT"]


def test_parked_failure_can_be_cancelled_final_failure_cannot(world: World) -> None:
    for op, retryable in (("a", True), ("b", False)):
        world.downgrade(op)
        world.upgrade(op, target=new_target(f"new-{op}"))
        world.vendor_failed(op, retryable)
        world.cancel(op)
    assert world.transfer("a").status == "cancelled"
    assert world.transfer("b").status == "failed" and _refusals(world, "b") == ["OPERATION_CLOSED"]
    assert world.subscription("s1").seats == 10  # failures move no seats


def test_retry_of_parked_failure_requests_the_same_call_again(world: World) -> None:
    from aggregates import transfer_commands

    world.downgrade("op")
    world.upgrade("op")
    request = world.transfer("op").vendor_request
    world.vendor_failed("op", retryable=True)
    uow = world.app.unit_of_work()
    transfer_commands.retry_transfer(uow, "op", "admin", "vendor back", "action-1")
    world.app.commit(uow)
    t = world.transfer("op")
    assert (t.status, t.vendor_request, t.vendor_rounds) == ("paired", request, 2)


def test_pairing_timeout_expires_only_waiting_halves(world: World) -> None:
    from datetime import timedelta

    from aggregates import transfer_commands

    world.downgrade("op")
    uow = world.app.unit_of_work()
    assert not transfer_commands.expire_transfer(uow, "op", world.now + timedelta(seconds=899), 900)
    assert transfer_commands.expire_transfer(uow, "op", world.now + timedelta(seconds=900), 900)
    world.app.commit(uow)
    assert outcome(world, "op") == ("expired", "PAIRING_TIMEOUT")
    world.upgrade("op")
    assert _refusals(world, "op") == ["OPERATION_CLOSED"]


def _refusals(world: World, op: str) -> list[str]:
    from aggregates.transfer import Transfer

    events = world.app.events.get(Transfer.create_id(op))
    return [e.reason_code for e in events if type(e).__name__ == "MessageRefused"]
