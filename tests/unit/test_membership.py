"""The static member's instance id slots, and the watches over kafka-python's group state
(the real broker's side: tests/e2e/test_group_membership.py and test_compose_stack.py)."""

import multiprocessing
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka.structs import MemberState

from processor import instance_id
from processor.consume import membership
from processor.consume.membership import FenceWatch, JoinWatch
from processor.settings import Settings, SettingsError


def _hold(directory: str, group: str, ready: object, done: object) -> None:
    import os

    os.environ["COTERM_SLOT_DIR"] = directory
    slot = instance_id.claim(group)
    ready.put(slot.id)  # type: ignore[attr-defined]
    done.wait(30)  # type: ignore[attr-defined]


def test_slots_differ_while_held_and_a_dead_process_frees_its_own(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTERM_SLOT_DIR", str(tmp_path))
    host = socket.gethostname()
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Event()
    other = ctx.Process(target=_hold, args=(str(tmp_path), "g", ready, done))
    other.start()
    assert ready.get(timeout=30) == f"{host}-0"
    mine = instance_id.claim("g")
    assert mine.id == f"{host}-1"  # slot 0 is another running process's
    assert instance_id.claim("other-group").id == f"{host}-0"  # slots are per group
    other.kill()
    other.join()
    back = instance_id.claim("g")
    assert back.id == f"{host}-0"  # freed by the kernel when it died: a restart gets its id back
    mine.release()
    assert instance_id.claim("g").id == f"{host}-1"  # released: free again
    back.release()


def _consumer(state: str, heartbeat: bool = True, rejoin: bool = False, static: str | None = "h-0") -> SimpleNamespace:
    return SimpleNamespace(_coordinator=SimpleNamespace(state=state, _heartbeat_enabled=heartbeat,
                                                        _heartbeat_closed=False, rejoin_needed=rejoin,
                                                        group_instance_id=static))


def test_a_join_under_way_past_the_rebalance_timeout_is_stuck_and_a_short_one_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(membership.time, "monotonic", lambda: now[0])
    watch = JoinWatch(max_poll_interval_ms=10_000)
    assert not watch.stuck(_consumer(MemberState.REBALANCING))
    now[0] += 19.9
    assert not watch.stuck(_consumer(MemberState.REBALANCING))  # within rebalance timeout + 10 s
    assert not watch.stuck(_consumer(MemberState.STABLE))  # it completed: the clock starts again
    assert not watch.stuck(_consumer(MemberState.REBALANCING))
    now[0] += 20.1
    assert watch.stuck(_consumer(MemberState.REBALANCING))
    assert not watch.stuck(_consumer(MemberState.REBALANCING))  # once per hang: the new consumer gets its time


def test_a_stable_static_member_without_heartbeats_is_fenced_only_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(membership.time, "monotonic", lambda: now[0])
    watch = FenceWatch(heartbeat_interval_ms=1000)
    assert not watch.fenced(_consumer(MemberState.STABLE, heartbeat=False))
    now[0] += 2.9
    assert not watch.fenced(_consumer(MemberState.STABLE, heartbeat=False))
    now[0] += 0.2
    assert watch.fenced(_consumer(MemberState.STABLE, heartbeat=False))
    # Heartbeats off for a join's round trip, or a dynamic member: never fenced.
    other = FenceWatch(heartbeat_interval_ms=1000)
    for _ in range(5):
        now[0] += 3
        assert not other.fenced(_consumer(MemberState.REBALANCING, heartbeat=False))
        assert not other.fenced(_consumer(MemberState.STABLE, heartbeat=False, rejoin=True))
        assert not other.fenced(_consumer(MemberState.STABLE, heartbeat=False, static=None))


def test_group_settings_kafka_refuses_are_refused_before_a_join() -> None:
    with pytest.raises(SettingsError, match="COTERM_KAFKA_HEARTBEAT_INTERVAL_MS=5000 must be at most a third"):
        Settings.from_env({"COTERM_KAFKA_HEARTBEAT_INTERVAL_MS": "5000"})
    with pytest.raises(SettingsError, match="COTERM_KAFKA_GROUP_INSTANCE_ID='a b'"):
        Settings.from_env({"COTERM_KAFKA_GROUP_INSTANCE_ID": "a b"})
    options = Settings.from_env({"COTERM_KAFKA_GROUP_INSTANCE_ID": "proc-7"}).group_options()
    assert options == {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10_000,
                       "group_instance_id": "proc-7"}
    assert "group_instance_id" not in Settings().group_options(static=False)
