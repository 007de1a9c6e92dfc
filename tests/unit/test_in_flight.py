"""Transfers in flight (CONTRACT.md section 3, 1.2): decided transfers hold their seats and their
place on every subscription they touch; a call goes to the vendor only on its turn, with a body
built then from the seats confirmed so far."""

from typing import Any

import pytest

from aggregates import transfer_commands
from aggregates.errors import Refusal
from tests.world import World, existing_target, new_target


@pytest.fixture
def world() -> World:
    w = World().products_and_customer()
    w.purchase("s1", seats=10, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    w.purchase("t1", product_id="p1", seats=5, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    return w


def pair(world: World, op: str, seats: int, target: dict[str, Any] | None = None, source: str = "s1") -> str:
    world.downgrade(op, subscription_id=source, seats=seats)
    world.upgrade(op, target=target or new_target(f"new-{op}"), seats=seats)
    return world.transfer(op).status


def turn(world: World, op: str) -> transfer_commands.Turn | None:
    uow = world.app.unit_of_work()
    found = transfer_commands.take_turn(uow, op)
    world.app.commit(uow)
    return found


def test_decided_transfers_hold_seats_so_later_ones_see_them_gone(world: World) -> None:
    assert pair(world, "a", 4) == "paired"
    assert pair(world, "b", 4) == "paired"
    assert world.subscription("s1").available_seats == 2
    assert pair(world, "c", 2) == "rejected"  # 2 of 2 available would leave none
    reason = world.transfer("c").outcome
    assert reason["reason_code"] == "INSUFFICIENT_SEATS"
    assert reason["facts"]["held_seats"] == 8 and reason["facts"]["held_by"] == ["a", "b"]
    assert pair(world, "d", 1) == "paired"


def test_seven_transfers_from_one_source_tell_the_vendor_a_chain(world: World) -> None:
    world.purchase("big", seats=1000, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    ops = [f"op{i}" for i in range(7)]
    for i, op in enumerate(ops):
        target = existing_target("t1") if i % 2 else new_target(f"n{i}")
        assert pair(world, op, 10 + i, target=target, source="big") == "paired"
    sent: list[dict[str, Any]] = []
    for op in ops:
        assert all(turn(world, later).body is None for later in ops[ops.index(op) + 1:])  # they wait their turn
        t = turn(world, op)
        assert t is not None and t.body is not None and t.waits_for == []
        sent.append(t.body)
        world.vendor_ok(op)
    assert [b["source"]["seats_before"] for b in sent] == [1000, 990, 979, 967, 954, 940, 925]
    for before, after in zip(sent, sent[1:], strict=False):
        assert after["source"]["seats_before"] == before["source"]["seats_after"]
    existing = [b["target"] for b in sent if b["target"]["kind"] == "existing_subscription"]
    assert [(t["seats_before"], t["seats_after"]) for t in existing] == [(5, 16), (16, 29), (29, 44)]
    assert world.subscription("big").seats == 1000 - sum(range(10, 17))
    assert world.subscription("t1").seats == 5 + 11 + 13 + 15


def test_a_call_waits_for_every_transfer_ahead_on_its_source_and_target(world: World) -> None:
    world.purchase("s2", seats=10, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    pair(world, "a", 2, target=existing_target("t1"))  # s1 -> t1
    pair(world, "b", 2, target=existing_target("t1"), source="s2")  # s2 -> t1: waits for a on t1
    pair(world, "c", 2, source="s2")  # s2 -> new: waits for b on s2
    assert turn(world, "b").waits_for == ["a"]
    assert turn(world, "c").waits_for == ["b"]
    assert turn(world, "a").body is not None
    world.vendor_ok("a")
    assert turn(world, "b").body["target"]["seats_before"] == 7
    assert turn(world, "c").waits_for == ["b"]


def test_body_is_built_once_and_reused_by_every_retry(world: World) -> None:
    pair(world, "a", 3)
    first = turn(world, "a").body
    world.resize("s1", 20, on="2026-11-01")  # confirmed seats change while the call is out
    assert turn(world, "a").body == first  # a resend (e.g. by the next leader) sends the same body
    world.vendor_failed("a", retryable=True)
    uow = world.app.unit_of_work()
    transfer_commands.retry_transfer(uow, "a", "admin", "vendor back", "act-1")
    world.app.commit(uow)
    assert turn(world, "a").body == first


def test_parked_call_keeps_its_seats_and_place_until_cancelled(world: World) -> None:
    pair(world, "a", 4)
    pair(world, "b", 2)
    turn(world, "a")
    world.vendor_failed("a", retryable=True)  # parked VENDOR_UNAVAILABLE
    assert world.subscription("s1").available_seats == 4
    assert turn(world, "b").waits_for == ["a"]
    world.cancel("a")
    assert world.transfer("a").status == "cancelled"
    assert world.subscription("s1").available_seats == 8
    body = turn(world, "b").body
    assert body["source"] == {"subscription_id": "s1", "seats_before": 10, "seats_after": 8}


def test_permanent_refusal_releases_seats_and_a_retry_holds_them_again(world: World) -> None:
    pair(world, "a", 4)
    turn(world, "a")
    world.vendor_failed("a", retryable=False)  # VENDOR_REJECTED: answered for good
    assert world.subscription("s1").available_seats == 10 and not world.subscription("s1").in_flight
    pair(world, "b", 7)
    uow = world.app.unit_of_work()
    with pytest.raises(Refusal) as refused:  # a retry is a new call: 4 of the 3 seats left would leave none
        transfer_commands.retry_transfer(uow, "a", "admin", "plan fixed", "act-1")
    uow.discard()
    assert refused.value.reason == "INSUFFICIENT_SEATS"
    turn(world, "b")
    world.vendor_failed("b", retryable=False)  # b released: a fits again
    uow = world.app.unit_of_work()
    transfer_commands.retry_transfer(uow, "a", "admin", "plan fixed", "act-2")
    world.app.commit(uow)
    assert world.subscription("s1").in_flight == {"a": 4}
    assert world.transfer("a").idempotency_key != "a"  # a new call under a key of its own
    assert turn(world, "a").body["source"]["seats_before"] == 10


def test_completion_releases_the_place_for_the_next(world: World) -> None:
    pair(world, "a", 4)
    pair(world, "b", 2)
    turn(world, "a")
    world.vendor_ok("a")
    assert list(world.subscription("s1").in_flight) == ["b"]
    assert world.subscription("s1").available_seats == 4
    assert turn(world, "b").body["source"]["seats_before"] == 6


def test_preview_counts_held_seats(world: World) -> None:
    from datetime import date

    from aggregates import previews

    pair(world, "a", 8)
    uow = world.app.unit_of_work()
    found = previews.preview_transfer(uow, "s1", 2, {"kind": "new_subscription", "plan_id": "plan-p2"},
                                      date(2026, 11, 1))
    uow.discard()
    assert found["reason_code"] == "INSUFFICIENT_SEATS"
    assert found["source"]["available_seats"] == 2 and found["source"]["held_by"] == ["a"]


def test_the_decided_body_counts_on_the_transfers_ahead_and_needs_no_record_when_they_go_through(world: World) -> None:
    from aggregates.transfer import Transfer

    pair(world, "a", 2, target=existing_target("t1"))
    pair(world, "b", 3, target=existing_target("t1"))  # decided as if a had gone through: s1 8 -> 5, t1 7 -> 10
    assert world.transfer("b").vendor_request["source"] == {"subscription_id": "s1", "seats_before": 8, "seats_after": 5}
    assert world.transfer("b").vendor_request["target"]["seats_before"] == 7
    turn(world, "a")
    world.vendor_ok("a")
    assert turn(world, "b").body == world.transfer("b").vendor_request
    sent = [e for e in world.app.events.get(Transfer.create_id("b")) if type(e).__name__ == "VendorCallSent"]
    assert sent == []  # the decided body was right: one event fewer per transfer


def test_a_body_differs_from_the_decided_one_when_a_transfer_ahead_failed(world: World) -> None:
    pair(world, "a", 2)
    pair(world, "b", 3)  # decided as 8 -> 5
    turn(world, "a")
    world.vendor_failed("a", retryable=False)  # a's seats never moved
    body = turn(world, "b").body
    assert body["source"] == {"subscription_id": "s1", "seats_before": 10, "seats_after": 7}
    assert world.transfer("b").body_sent() == body  # recorded: a resend sends the same
