"""Seat drift on the Subscription (CONTRACT.md section 7): recorded once per pair of counts,
cleared when the two agree, never a change of seats by itself; staff resolve (the vendor's count
becomes coterm's, which the transfer rules then read) or explain it."""

import json
from typing import Any

import pytest

from aggregates import drift_commands, errors
from aggregates.drift_commands import Observed
from aggregates.subscription import Subscription
from tests.world import World, new_target


@pytest.fixture
def world() -> World:
    w = World().products_and_customer()
    w.purchase("s1", seats=10, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    return w


def observe(world: World, vendor_seats: int, seen_version: int | None = None, sub: str = "s1") -> Observed:
    version = world.subscription(sub).version if seen_version is None else seen_version
    return world.app.decide(lambda uow: drift_commands.record_vendor_seats(
        uow, sub, vendor_seats, version, "2026-12-02T10:00:00+00:00", "test pass"))


def act(world: World, action: str, sub: str = "s1") -> Subscription:
    command = {"resolve": drift_commands.resolve_drift, "explain": drift_commands.explain_drift}[action]
    return world.app.decide(lambda uow: command(uow, sub, "alice", "vendor portal change", "a-1"))


def drift_events(world: World, sub: str = "s1") -> list[Any]:
    return [type(e).__name__ for e in world.app.events.get(Subscription.create_id(sub)) if "Drift" in type(e).__name__]


def test_a_difference_is_recorded_once_per_pair_and_cleared_when_they_agree(world: World) -> None:
    assert observe(world, 10) is Observed.AGREES and drift_events(world) == []
    assert observe(world, 12) is Observed.DRIFT
    assert world.subscription("s1").seats == 10  # drift never changes the seats by itself
    assert world.subscription("s1").drift == {"status": "open", "coterm_seats": 10, "vendor_seats": 12,
                                              "found_at": "2026-12-02T10:00:00+00:00", "found_by": "test pass"}
    assert observe(world, 12) is Observed.KNOWN and observe(world, 12) is Observed.KNOWN
    assert observe(world, 13) is Observed.DRIFT  # a new pair of counts: a new record
    assert observe(world, 10) is Observed.CLEARED
    assert world.subscription("s1").drift["status"] == "cleared"
    assert observe(world, 10) is Observed.AGREES
    assert drift_events(world) == ["DriftFound", "DriftFound", "DriftCleared"]


def test_a_count_asked_for_while_coterm_changed_proves_nothing(world: World) -> None:
    seen = world.subscription("s1").version
    world.downgrade("op", seats=3)
    world.upgrade("op", target=new_target("n1"), seats=3)  # decided: in flight on s1
    assert observe(world, 7, seen_version=seen) is Observed.MOVED
    assert observe(world, 7) is Observed.MOVED  # in flight: the vendor may have it or not yet
    world.vendor_ok("op")
    assert observe(world, 7) is Observed.AGREES
    assert drift_events(world) == []


def test_resolve_makes_the_vendors_count_the_one_rules_read(world: World) -> None:
    observe(world, 4)
    world.downgrade("big", seats=5)
    world.upgrade("big", target=new_target("n1"), seats=5)
    assert world.transfer("big").status == "paired"  # decided on coterm's 10 seats, in flight
    with pytest.raises(errors.TransferInFlight):
        act(world, "resolve")
    world.vendor_failed("big", retryable=False)  # refused for good: its seats are free again
    assert world.subscription("s1").seats == 10
    assert observe(world, 4) is Observed.KNOWN
    resolved = act(world, "resolve")
    assert resolved.seats == 4 and resolved.drift["status"] == "resolved" and resolved.drift["by"] == "alice"
    assert world.subscription("s1").upsized_on == []  # not an upsize: the date is unknown
    world.downgrade("after", seats=5, on="2026-11-02")
    world.upgrade("after", target=new_target("n2"), seats=5, on="2026-11-02")
    assert world.transfer("after").outcome["reason_code"] == "INSUFFICIENT_SEATS"  # 5 of the vendor's 4
    assert observe(world, 4) is Observed.AGREES
    with pytest.raises(errors.NoDrift):
        act(world, "resolve")


def test_a_drift_found_against_other_seats_is_not_resolved(world: World) -> None:
    observe(world, 12)
    world.resize("s1", 11, on="2026-11-03")
    with pytest.raises(errors.DriftStale):
        act(world, "resolve")
    assert world.subscription("s1").seats == 11


def test_an_explained_drift_stays_on_record_until_the_counts_change(world: World) -> None:
    observe(world, 12)
    assert act(world, "explain").drift["status"] == "explained"
    assert observe(world, 12) is Observed.KNOWN  # explained: a repeated pass records nothing
    assert world.subscription("s1").drift["status"] == "explained"
    assert observe(world, 14) is Observed.DRIFT
    assert world.subscription("s1").drift["status"] == "open"


def test_a_snapshot_taken_before_drift_existed_is_upcast(world: World) -> None:
    sub = world.subscription("s1")
    state = {k: v for k, v in vars(sub).items() if k != "drift"}
    Subscription.upcast_v2_v3(state)
    assert state["drift"] is None
    stored = json.loads(world.app.recorder.select_events(Subscription.create_id("s1"))[0].state)
    assert "drift" not in stored  # events keep their shape: only the aggregate's state grew
