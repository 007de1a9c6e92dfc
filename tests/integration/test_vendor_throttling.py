"""A throttling vendor (contract 1.3, section 4), the small version of the throttled storm: while
a burst of transfers and a bulk migration run, the vendor answers 429 to 30% of attempts with
a `Retry-After` of 1-3 s, and some 408. Every transfer completes once, none is refused or
parked, and no attempt of a call comes before the `Retry-After` its last answer gave."""

from collections import defaultdict

import pytest

from processor.dev.vendor_sim import Faults, VendorSimulator
from projections.staff import Staff
from tests.harness import Scenario, downgrade, seed_reference_data, upgrade
from tests.http_server import call, serving

CUSTOMERS = 20
PER_SOURCE = 3  # transfers on one source subscription: they take turns


@pytest.mark.integration
def test_a_throttling_vendor_slows_coterm_down_and_fails_nothing(sqlite_scenario: Scenario, vendor: VendorSimulator) -> None:
    s = sqlite_scenario
    customers = [f"tc{n}" for n in range(CUSTOMERS)]
    for customer in customers:
        seed_reference_data(s, customer)
    s.process()  # the customers and subscriptions exist before their orders come (on other partitions)
    ops = []
    for customer in customers:
        for n in range(PER_SOURCE):
            op = f"thr-{customer}-{n}"
            ops.append(op)
            # As the world sends them: the halves on different partitions, the upgrade first every other time.
            halves = [("transfer.downgrade_ordered", downgrade(op, customer, seats=1), 0),
                      ("transfer.upgrade_ordered", upgrade(op, customer, seats=1), 1)]
            for type_, payload, partition in (halves if n % 2 else halves[::-1]):
                s.send(type_, payload, key=op, partition=partition, flush=False)
    s.send("migration.bulk_requested", {"bulk_id": "thr-bulk", "partner_id": "partner-1", "requested_by": "ops",
                                        "product_ids": ["p2"], "all_customers_of_partner": True}, key="partner-1")  # refused: sources stay annual
    vendor.state.faults = Faults(throttle_share=0.3, retry_after_s=[1, 3], delay_s=0.02,
                                 script=[{"status": 408}, {"status": 408}, {"status": 429, "retry_after": 2}])
    s.process(idle_s=2.0, timeout_s=240)

    results = defaultdict(list)
    for result in s.results():
        op = result["payload"].get("operation_id")
        if op in ops:
            results[op].append(result["type"])
    assert {op: results[op] for op in ops} == {op: ["transfer.completed"] for op in ops}
    assert sorted(vendor.state.accepted) == sorted(ops)  # one accepted call per transfer
    assert [r["type"] for r in s.results() if r["payload"].get("bulk_id") == "thr-bulk"] == [
        "migration.bulk_accepted", "migration.bulk_finished"]
    attempts = defaultdict(list)
    for request in vendor.state.requests:
        attempts[request["key"]].append(request)
    throttled = [r for r in vendor.state.requests if r["status"] in (429, 408)]
    assert len(throttled) >= 0.15 * len(ops), len(throttled)  # the vendor did throttle
    for key, tries in attempts.items():
        assert len({t["body"] for t in tries}) == 1, key  # the same body every time
        for before, after in zip(tries, tries[1:]):
            if before.get("retry_after") is not None:
                assert after["at"] - before["at"] >= float(before["retry_after"]), (key, before, after)
    assert not s.dead_letters()
    # The dashboard's word on it, from the leading outbox's limiter (`GET /api/vendor`).
    app = s.open_store()
    try:
        with serving(app, Staff.load(None)) as api:
            status, seen = call(f"{api}/api/vendor")
        assert status == 200 and seen["known"] and seen["throttling"], seen  # the last 429 came within the minute
        # Written at most once a second while it changes: the last 429s of the run may not be in it.
        assert 0 < seen["throttled_total"] <= sum(r["status"] == 429 for r in vendor.state.requests), seen
        assert seen["concurrency_max"] == 32 and 1 <= seen["concurrency_limit"] <= 32
    finally:
        app.close()
