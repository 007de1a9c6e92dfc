"""Both halves of an operation in one batch: the operation opens with its vendor call requested,
one stored event (`Opened` v3 with `call`) where a pair decided later has two (`Opened`, then
`VendorCallRequested`). Everything that reads the log takes the one as it takes the two."""

import json
from typing import Any

from aggregates.application import _project
from aggregates.transfer import Transfer
from processor.outbox.dispatch import Outbox
from processor.outbox.recent_transfers import RecentTransfers
from tests.unit.test_expiry import Published
from tests.unit.test_event_versions import _projected, _rebuilt
from tests.world import World

STATE = ("operation_id", "status", "halves", "vendor_request", "idempotency_key", "call_cause", "vendor_rounds",
         "parked", "outcome")


def _in_one_batch(op: str = "op", seats: int = 3) -> World:
    world = World()
    world.products_and_customer()
    world.purchase("s1", seats=10)
    with world.one_batch():
        world.downgrade(op, seats=seats)
        world.upgrade(op, seats=seats)
    return world


def _stored(world: World, op: str = "op") -> list[Any]:
    return list(world.app.recorder.select_events(Transfer.create_id(op)))


def test_both_halves_in_one_batch_store_one_event_and_hold_the_seats() -> None:
    world = _in_one_batch()
    [opened] = _stored(world)
    assert opened.topic.endswith("Transfer.Opened")
    state = json.loads(opened.state)
    assert state["class_version"] == 3 and state["call"]["reason"] == "paired"
    assert state["half"]["order_id"] == "op-down" and state["call"]["half"]["order_id"] == "op-up"
    transfer = world.transfer("op")
    assert transfer.version == 1 and transfer.status == "paired" and set(transfer.halves) == {"downgrade", "upgrade"}
    assert world.subscription("s1").in_flight == {"op": 3}  # held in the same unit of work, in line
    assert world.vendor_ok("op")
    assert world.transfer("op").status == "completed" and world.subscription("s1").seats == 7


def test_the_one_event_rebuilds_and_projects_as_the_two_do() -> None:
    """The same pair, its `Opened` with `call` split into the two events a later pairing stores:
    the same transfer rebuilt, the same operation document."""
    world = _in_one_batch()
    [opened] = _stored(world)
    mapper = world.app.mapper
    event = mapper.to_domain_event(opened)
    call = event.call
    split = [mapper.to_stored_event(type(event)(**{**vars(event), "call": None})),
             mapper.to_stored_event(Transfer.VendorCallRequested(
                 originator_id=event.originator_id, originator_version=2, timestamp=event.timestamp,
                 operation_id="op", **call))]
    one, two = _rebuilt(mapper, [opened]), _rebuilt(mapper, split)
    assert {k: getattr(one, k) for k in STATE} == {k: getattr(two, k) for k in STATE}
    assert one.status == "paired" and one.vendor_request["seats"] == 3
    one_doc, two_doc = _projected(mapper, [opened]), _projected(mapper, split)
    assert one_doc == two_doc
    assert one_doc["status"] == "paired" and set(one_doc["halves"]) == {"downgrade", "upgrade"}
    assert one_doc["pairing_latency_ms"] is not None and one_doc["vendor_request"] == one.vendor_request


def test_halves_in_two_batches_still_store_the_call_apart() -> None:
    world = World().requested("op", seats=3)
    assert [s.topic.rsplit(".", 1)[-1] for s in _stored(world)] == ["Opened", "VendorCallRequested"]
    assert world.app.mapper.to_domain_event(_stored(world)[0]).call is None


def test_an_opened_stored_before_v3_is_upcast_without_a_call() -> None:
    world = World().requested("op", seats=3)
    opened = _stored(world)[0]
    state = json.loads(opened.state)
    del state["call"]
    state["class_version"] = 2
    legacy = type(opened)(opened.originator_id, 1, opened.topic, json.dumps(state).encode())
    event = world.app.mapper.to_domain_event(legacy)
    assert event.call is None and event.half["order_id"] == "op-down"


def test_a_batch_that_refuses_a_message_before_pairing_stores_the_call_apart() -> None:
    """Only an `Opened` still alone in the unit of work takes the call: a refusal recorded after
    it keeps the order of what happened."""
    world = World()
    world.products_and_customer()
    world.purchase("s1", seats=10)
    with world.one_batch():
        world.downgrade("op", seats=3)
        world.downgrade("op", seats=2, order_id="another")  # DUPLICATE_HALF, refused
        world.upgrade("op", seats=3)
    names = [s.topic.rsplit(".", 1)[-1] for s in _stored(world)]
    assert names == ["Opened", "MessageRefused", "VendorCallRequested"]


def test_the_follower_rebuilds_a_transfer_opened_with_its_call() -> None:
    world = _in_one_batch()
    [event] = [world.app.mapper.to_domain_event(s) for s in _stored(world)]
    recent = RecentTransfers()
    built = recent.read(event)
    stored = _project(None, [world.app.mapper.to_domain_event(s) for s in _stored(world)])
    assert built is not None and vars(built) == vars(stored) and built.awaiting_vendor
    assert not recent.events


def test_the_outbox_takes_a_call_from_an_opened_with_it() -> None:
    world = _in_one_batch()
    box = Outbox(world.app, Published(), None, 900.0, lambda: world.now)
    try:
        assert box.follow() == 1
        assert list(box.calls) == ["op"] and list(box.to_send) == ["op"] and not box.waiting
        call = box.calls["op"]
        assert call.key == "op" and call.target_id == "s-new"
        assert call.cause == world.transfer("op").call_cause  # the upgrade's message: its trace goes on
    finally:
        box.close()
