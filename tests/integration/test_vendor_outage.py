"""A vendor outage mid-stream (503s, then timeouts): consuming goes on, operations wait in `sent`,
and every one completes after recovery with exactly one accepted call; with too few attempts
they park as VENDOR_UNAVAILABLE and a staff retry completes them.

The outage lasts COTERM_OUTAGE_S seconds (8 in `make test`, 30 in `make storm`)."""

import json
import os
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from aggregates import transfer_commands
from aggregates.transfer import Transfer
from processor.dev.vendor_sim import Faults, VendorSimulator
from tests.harness import Scenario, downgrade, seed_reference_data, upgrade
from tests.waiting import wait_for

OUTAGE_S = float(os.environ.get("COTERM_OUTAGE_S", "8"))
# Backoff waits 0.2 s doubling to 10 s between attempts: enough attempts to outlast the outage.
ATTEMPTS_TO_OUTLAST = next(n for n in range(2, 30) if sum(min(0.2 * 2**i, 10) for i in range(n - 1)) > OUTAGE_S + 10)


def send_transfers(s: Scenario, first: int, count: int) -> list[str]:
    ops = [f"out-{n}" for n in range(first, first + count)]
    for op in ops:
        s.send("transfer.downgrade_ordered", downgrade(op, seats=1))
        s.send("transfer.upgrade_ordered", upgrade(op, seats=1))
    return ops


def statuses(s: Scenario, ops: list[str]) -> dict[str, str]:
    app = s.open_store()
    try:
        found = {}
        for op in ops:
            try:
                found[op] = app.repository.get(Transfer.create_id(op)).status
            except Exception:  # noqa: BLE001 - not recorded yet
                found[op] = "unknown"
        return found
    finally:
        app.close()


class ChildMemory:
    """Peak growth of RSS, from the first sample, of this process's children (the outbox process),
    read from /proc every 0.2 s."""

    def __init__(self) -> None:
        self.first: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> "ChildMemory":
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.2):
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                except OSError:
                    continue
                if fields.get("PPid", "").strip() != me or "VmRSS" not in fields:
                    continue
                pid, kb = int(status.parent.name), int(fields["VmRSS"].split()[0])
                self.seen = True
                self.first.setdefault(pid, kb)
                self.peak[pid] = max(self.peak.get(pid, 0), kb)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max((self.peak[pid] - self.first[pid] for pid in self.peak), default=0) / 1024


def assert_one_accepted_call_each(vendor: VendorSimulator, ops: list[str]) -> None:
    bodies = defaultdict(set)
    for request in vendor.state.requests:
        bodies[request["key"]].add(request["body"])
    assert set(vendor.state.accepted) == set(ops)  # one accepted call per operation, none for anything else
    assert all(len(bodies[op]) == 1 for op in ops)  # retried only with the same key and the same body


@pytest.mark.parametrize("kind", ["503", "timeout"])
@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_operations_wait_out_an_outage_and_complete_once_each(scenario: Scenario, vendor: VendorSimulator,
                                                              kind: str) -> None:
    scenario.with_settings(vendor_max_attempts=ATTEMPTS_TO_OUTLAST)
    seed_reference_data(scenario)
    scenario.send("subscription.resized", {"subscription_id": "c1-s1", "seats": 1000}, key="c1",
                  occurred_at="2026-10-01T10:00:00Z")
    before = send_transfers(scenario, 0, 20)
    worker = threading.Thread(target=scenario.process, kwargs={"idle_s": 1.5, "timeout_s": OUTAGE_S + 240})
    worker.start()
    wait_for(lambda: set(statuses(scenario, before).values()) == {"completed"}, 120, interval=0.3)

    # Memory is the outbox process's (where waiting calls live), sampled through the outage.
    memory = ChildMemory().start()
    vendor.state.faults = Faults(fail_rate=1.0) if kind == "503" else Faults(hang_s=6.0)  # client times out at 5 s
    outage_started = time.monotonic()
    during = send_transfers(scenario, 20, 40)
    # Consuming goes on: every pair is matched and its call requested; slow calls show as `sent`.
    seen = wait_for(lambda: (st := statuses(scenario, during)) and all(v in ("paired", "sent") for v in st.values())
                    and "sent" in st.values() and st, OUTAGE_S, interval=0.3)
    assert not {"completed", "failed"} & set(seen.values())
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    vendor.state.faults = Faults()
    worker.join(OUTAGE_S + 240)
    assert not worker.is_alive()

    assert set(statuses(scenario, before + during).values()) == {"completed"}
    assert_one_accepted_call_each(vendor, before + during)
    results = [r for r in scenario.results() if r["type"].startswith("transfer.")]
    assert sorted(r["payload"]["operation_id"] for r in results) == sorted(before + during)  # one result each
    assert all(r["type"] == "transfer.completed" for r in results)
    grown_mb = memory.stop()
    assert memory.seen, "no child process (the outbox) was found to measure"
    assert grown_mb < 150, f"the outbox process grew by {grown_mb:.0f} MB during the outage"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_too_few_attempts_for_an_outage_park_and_a_staff_retry_completes(scenario: Scenario,
                                                                          vendor: VendorSimulator) -> None:
    scenario.with_settings(vendor_max_attempts=3)
    seed_reference_data(scenario)
    vendor.state.faults = Faults(fail_rate=1.0)
    ops = send_transfers(scenario, 0, 5)  # all five from one source
    scenario.process()
    # The first call parks VENDOR_UNAVAILABLE and keeps its place (contract 1.2): the four decided
    # after it on the same source wait behind it, unsent.
    assert statuses(scenario, ops) == {"out-0": "failed", **{op: "paired" for op in ops[1:]}}
    failures = [r for r in scenario.results() if r["type"] == "transfer.failed"]
    assert [(r["payload"]["operation_id"], r["payload"]["reason_code"], r["payload"]["retryable"]) for r in failures] \
        == [("out-0", "VENDOR_UNAVAILABLE", True)]
    assert len(vendor.state.requests) == 3 and not vendor.state.accepted

    vendor.state.faults = Faults()  # the vendor is back; staff retry the parked operation
    app = scenario.open_store()
    app.decide(lambda uow: transfer_commands.retry_transfer(uow, "out-0", "alice", "vendor is back", str(uuid.uuid4())))
    app.close()
    scenario.process()
    assert set(statuses(scenario, ops).values()) == {"completed"}
    assert_one_accepted_call_each(vendor, ops)
    completed = [r for r in scenario.results() if r["type"] == "transfer.completed"]
    assert sorted(r["payload"]["operation_id"] for r in completed) == ops
    assert all(json.loads(r["body"])["operation_id"] in ops for r in vendor.state.requests)
    # ... one at a time, in decision order, each told the seats the one before it left
    firsts = {r["key"]: json.loads(r["body"])["source"] for r in vendor.state.requests}  # retries repeat the body
    chain = sorted(firsts.values(), key=lambda source: -source["seats_before"])
    assert len(chain) == 5 and [s["seats_before"] for s in chain] == [s["seats_after"] + 1 for s in chain]
    assert all(after["seats_before"] == before["seats_after"] for before, after in zip(chain, chain[1:], strict=False))
