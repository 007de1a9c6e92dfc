"""Stored history outlives the code: old event versions are upcast, not rewritten."""

import dataclasses
import json
from datetime import date
from typing import Any

import pytest

from aggregates.application import _project
from aggregates.halves import NewSubscription, Upgrade, half_of
from aggregates.transfer import Transfer
from projections.plain_events import PlainEvents
from projections.projector import Rows, project
from tests.world import World


def _paired() -> World:
    """A transfer "op" of 3 seats out of s1 (10 seats), both halves received: its call requested."""
    return World().requested("op", seats=3)


def test_vendor_call_requested_v1_is_upcast_with_a_reason() -> None:
    world = _paired()
    recorder = world.app.recorder
    [stored] = [e for e in recorder.select_events(Transfer.create_id("op")) if e.topic.endswith("VendorCallRequested")]
    state = json.loads(stored.state)
    assert state["class_version"] == 4
    del state["reason"], state["idempotency_key"], state["side"], state["half"]
    state["class_version"] = 1  # what a store written before `reason` existed holds
    legacy = type(stored)(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())
    event = world.app.mapper.to_domain_event(legacy)
    assert event.reason == "paired" and event.idempotency_key == "op"  # v1 -> v2 -> v3
    assert event.side is None and event.half is None  # v3 -> v4
    assert event.request["seats"] == 3


def test_a_pair_stored_before_v4_rebuilds_as_one_stored_since() -> None:
    """Before v4 the pairing half had its own `HalfReceived` ahead of the call: both histories
    rebuild the same transfer (the read models take both alike: `test_projection`)."""
    world = _paired()
    recorder, mapper = world.app.recorder, world.app.mapper
    stored = list(recorder.select_events(Transfer.create_id("op")))
    assert [s.topic.rsplit(".", 1)[-1] for s in stored] == ["Opened", "VendorCallRequested"]
    opened, requested = stored
    state = json.loads(requested.state)
    side, half = state.pop("side"), state.pop("half")
    state["class_version"] = 3
    received = mapper.to_stored_event(Transfer.HalfReceived(
        originator_id=opened.originator_id, originator_version=2, timestamp=mapper.to_domain_event(requested).timestamp,
        side=side, half=half, message_id=half["message_id"]))
    legacy = [opened, received,
              type(requested)(requested.originator_id, 3, requested.topic, json.dumps(state).encode())]
    old, new = (_rebuilt(mapper, events) for events in (legacy, stored))
    for name in ("status", "halves", "vendor_request", "idempotency_key", "call_cause", "vendor_rounds"):
        assert getattr(old, name) == getattr(new, name), name
    assert new.status == "paired" and set(new.halves) == {"downgrade", "upgrade"}
    # The operation's read-model document too: both halves, the pairing latency, the request.
    old_doc, new_doc = (_projected(mapper, events) for events in (legacy, stored))
    assert old_doc == new_doc
    assert set(new_doc["halves"]) == {"downgrade", "upgrade"} and new_doc["pairing_latency_ms"] is not None
    assert new_doc["status"] == "paired" and new_doc["vendor_request"] == new.vendor_request


def _projected(mapper: Any, stored: list[Any]) -> dict[str, Any]:
    plain = PlainEvents(mapper)
    rows = Rows(lambda table, row_id: None)
    for position, s in enumerate(stored, start=1):
        project(rows, plain.event(s.topic, s.originator_id.hex, s.originator_version, s.state), position)
    [doc] = [change["doc"] for change in rows.changed["operations"].values()]
    return doc


def _rebuilt(mapper: Any, stored: list[Any]) -> Transfer:
    aggregate = _project(None, (mapper.to_domain_event(s) for s in stored))  # as the store's loads rebuild
    assert isinstance(aggregate, Transfer)
    return aggregate


def test_a_half_keeps_its_stored_shape_and_compares_as_an_order() -> None:
    # Stored events hold plain values in the wire model's key order; the domain holds frozen values.
    stored = {"operation_id": "op-1", "order_id": "o-2", "customer_id": "c-1", "seats": 3, "requested_by": "p",
              "target": {"kind": "new_subscription", "new_subscription_id": "s-9", "product_id": "p-1",
                         "plan_id": "plan-2", "term_months": 12},
              "message_id": "m-1", "occurred_at": "2026-03-03T23:30:00-02:00", "recorded_at": "2026-03-04T01:30:01+00:00"}
    half = half_of("upgrade", stored)
    assert isinstance(half, Upgrade) and isinstance(half.target, NewSubscription)
    assert json.dumps(half.stored()) == json.dumps(stored)
    assert half.order_date == date(2026, 3, 4)  # the UTC date of occurred_at
    again = half_of("upgrade", {**stored, "message_id": "m-7", "recorded_at": "2026-03-05T00:00:00+00:00"})
    assert half.same_order(again)
    assert not half.same_order(half_of("upgrade", {**stored, "seats": 4}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        half.seats = 4  # type: ignore[misc]


# The stored shape of the events every transfer writes, as the `@event` command methods wrote them
# before the hot path triggered their classes directly (`trigger_event`, issue 29): same topics,
# same keys in the same order, so stores written by either read alike and `replay --verify` holds.
# (VendorCallRequested v4 added `side` and `half` at its end: the pairing half rides with the call.)
TRANSFER_EVENTS = {
    "aggregates.transfer:Transfer.Opened": None,  # created by the library's own constructor path
    "aggregates.transfer:Transfer.HalfReceived": ["timestamp", "side", "half", "message_id"],
    "aggregates.transfer:Transfer.VendorCallRequested": ["timestamp", "request", "requested_by", "reason", "message_id",
                                                         "operation_id", "idempotency_key", "side", "half",
                                                         "class_version"],
    "aggregates.subscription:Subscription.TransferHeld": ["timestamp", "operation_id", "seats_out", "message_id"],
    "aggregates.transfer:Transfer.Completed": ["timestamp", "operation_id", "source_subscription_id",
                                               "target_subscription_id", "seats", "vendor_reference", "attempts",
                                               "vendor_latency_ms", "message_id"],
    "aggregates.customer:Customer.SubscriptionAdded": ["timestamp", "subscription_id", "message_id"],
    "aggregates.subscription:Subscription.SeatsTransferredOut": ["timestamp", "operation_id", "seats", "message_id"],
}


def test_the_events_of_a_transfer_keep_their_stored_shape() -> None:
    world = _paired()
    assert world.vendor_ok("op")
    world.downgrade("big", seats=50)
    assert world.upgrade("big", seats=50).status == "rejected"  # a rejected pair still records its half alone
    shapes = {n.topic: list(json.loads(n.state)) for n in world.app.process_recorder.select_notifications(1, 1000)}
    for topic, keys in TRANSFER_EVENTS.items():
        assert topic in shapes
        if keys is not None:
            assert shapes[topic] == keys, topic
    transfer = world.transfer("op")
    assert transfer.status == "completed" and transfer.outcome is not None  # the events' own state changes ran
    assert world.subscription("s1").seats == 7 and world.subscription("s1").in_flight == {}
    assert world.customer_state().subscription_ids[-1] == transfer.vendor_request["target"]["subscription_id"]
