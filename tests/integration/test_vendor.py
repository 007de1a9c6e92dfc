"""Vendor faults: 503s then success, 400, exhausted attempts, and a crash with the call in flight."""

import os
import signal
import subprocess
import sys

import pytest

from processor.dev.vendor_sim import Faults, VendorSimulator
from tests.harness import Scenario, downgrade, seed_reference_data, upgrade
from tests.waiting import wait_for

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


def pair(scenario: Scenario, op: str, plan: str = "plan-new") -> None:
    seed_reference_data(scenario)
    scenario.send("transfer.downgrade_ordered", downgrade(op))
    scenario.send("transfer.upgrade_ordered", upgrade(op, plan=plan))


def test_503s_then_success_uses_one_key_and_body(scenario: Scenario, vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(fail_first=2)
    pair(scenario, "flaky")
    scenario.process()
    [result] = scenario.results_for("flaky")
    assert result["type"] == "transfer.completed"
    attempts = [r for r in vendor.state.requests if r["key"] == "flaky"]
    assert len(attempts) == 3 and len({a["body"] for a in attempts}) == 1


def test_vendor_400_is_a_permanent_failure(scenario: Scenario, vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(reject_plans=["plan-retired"])
    pair(scenario, "no", plan="plan-retired")
    scenario.process()
    [result] = scenario.results_for("no")
    assert result["type"] == "transfer.failed"
    assert (result["payload"]["reason_code"], result["payload"]["retryable"]) == ("VENDOR_REJECTED", False)
    assert "retired" in result["payload"]["detail"]

    # The vendor-side cause is fixed; staff retry with a reason: a new request under a new key.
    vendor.state.faults = Faults()
    app = scenario.open_store()
    from aggregates import transfer_commands

    app.decide(lambda uow: transfer_commands.retry_transfer(uow, "no", "alice", "plan re-enabled at the vendor",
                                                   "8a0a5a8e-3c1e-4a53-9d3e-6a8f9c1b2d3e"))
    app.close()
    scenario.process()
    completed = [r for r in scenario.results_for("no") if r["type"] == "transfer.completed"]
    assert len(completed) == 1
    keys = [r["key"] for r in vendor.state.requests]
    assert keys == ["no", "no:retry-1"] and set(vendor.state.accepted) == {"no:retry-1"}
    assert len({r["body"] for r in vendor.state.requests}) == 1  # the same request, under its own key


def test_unavailable_vendor_parks_the_operation_and_a_cancel_ends_it(scenario: Scenario, vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(fail_rate=1.0)
    scenario.with_settings(vendor_max_attempts=2)
    pair(scenario, "down")
    scenario.process()
    [failed] = scenario.results_for("down")
    assert (failed["payload"]["reason_code"], failed["payload"]["retryable"]) == ("VENDOR_UNAVAILABLE", True)
    scenario.send("transfer.cancel_requested", {"operation_id": "down", "requested_by": "ops", "reason": "give up"}, key="c1")
    scenario.process()
    assert [r["type"] for r in scenario.results_for("down")] == ["transfer.failed", "transfer.cancelled"]


def test_killed_with_the_vendor_call_in_flight_sends_it_again_under_its_key_and_completes_once(
        scenario: Scenario, vendor: VendorSimulator) -> None:
    pair(scenario, "crash")
    vendor.state.faults = Faults(delay_s=3.0)  # it answers 3 s late: the call is in flight at the kill
    # The broker's least session timeout: the killed member leaves the group sooner for the rerun.
    env = {**os.environ, **scenario.env(), "COTERM_KAFKA_SESSION_TIMEOUT_MS": "6000"}
    proc = subprocess.Popen([sys.executable, "-m", "processor.cli.coterm", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any("crash" in keys for keys in vendor.state.open_on.values()), 60,
                 "the vendor call of crash in flight")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert scenario.results_for("crash") == []  # killed before it heard the answer
    # The vendor goes on with the call nobody waits for any more, and accepts it.
    wait_for(lambda: "crash" in vendor.state.accepted, 10, "the vendor accepting the orphaned call")
    vendor.state.faults = Faults()
    scenario.process()  # restarted: the call goes again under the same key, the vendor says 409 (seen)
    [result] = scenario.results_for("crash")
    assert result["type"] == "transfer.completed"
    assert result["payload"]["vendor_reference"] == vendor.state.accepted["crash"]["reference"]
    sent = [r for r in vendor.state.requests if r["key"] == "crash"]
    assert len(sent) == 2 and len({r["body"] for r in sent}) == 1 and list(vendor.state.accepted) == ["crash"]
