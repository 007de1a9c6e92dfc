"""Stored history outlives the code: old event versions are upcast, not rewritten."""

import json

from aggregates.transfer import Transfer
from tests.world import World


def test_vendor_call_requested_v1_is_upcast_with_a_reason() -> None:
    world = World()
    world.product("p1")
    world.product("p2")
    world.customer()
    world.purchase("s1", seats=10)
    world.downgrade("op")
    world.upgrade("op")
    recorder = world.app.recorder
    [stored] = [e for e in recorder.select_events(Transfer.create_id("op")) if e.topic.endswith("VendorCallRequested")]
    state = json.loads(stored.state)
    assert state["class_version"] == 3
    del state["reason"], state["idempotency_key"]
    state["class_version"] = 1  # what a store written before `reason` existed holds
    legacy = type(stored)(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())
    event = world.app.mapper.to_domain_event(legacy)
    assert event.reason == "paired" and event.idempotency_key == "op"  # v1 -> v2 -> v3
    assert event.request["seats"] == 3
