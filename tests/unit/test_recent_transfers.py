"""The outbox rebuilds a transfer whose call was requested from the events its follower read,
as the store would rebuild it, or leaves it to the store."""

from typing import Any

from aggregates.application import _project
from aggregates.transfer import Transfer
from processor.outbox.recent_transfers import RecentTransfers
from tests.world import World


def _history(world: World, op: str) -> list[Any]:
    """The transfer's events as the follower decodes them from the log."""
    return [world.app.mapper.to_domain_event(s) for s in world.app.recorder.select_events(Transfer.create_id(op))]


def test_a_requested_call_rebuilds_the_transfer_the_store_would() -> None:
    world = World().requested("op", seats=1)
    events = _history(world, "op")
    assert [type(e).__name__ for e in events] == ["Opened", "VendorCallRequested"]
    recent = RecentTransfers()
    assert recent.read(events[0]) is None  # opened: nothing to send yet
    built = recent.read(events[1])
    stored = _project(None, _history(world, "op"))
    assert built is not None and built is not stored
    assert vars(built) == vars(stored)
    assert built.awaiting_vendor and built.vendor_request == stored.vendor_request
    assert not recent.events  # handed over: the cache holds it from now on


def test_a_transfer_opened_before_the_follower_started_is_left_to_the_store() -> None:
    events = _history(World().requested("op", seats=1), "op")
    assert RecentTransfers().read(events[1]) is None


def test_an_event_not_read_here_leaves_it_to_the_store() -> None:
    opened, requested = _history(World().requested("op", seats=1), "op")
    recent = RecentTransfers()
    recent.read(opened)
    requested.__dict__["originator_version"] = 3  # as if version 2 had not been read here
    assert recent.read(requested) is None and not recent.events


def test_only_the_most_recently_opened_are_kept() -> None:
    world = World().requested("a", "b", "c", seats=1)
    recent = RecentTransfers(keep=2)
    histories = {op: _history(world, op) for op in "abc"}
    for op in "abc":
        recent.read(histories[op][0])
    assert recent.read(histories["a"][1]) is None  # pushed out by b and c
    assert recent.read(histories["c"][1]) is not None
