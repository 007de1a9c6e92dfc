"""Reconciliation with the vendor (CONTRACT.md section 7), as the world sends it: a real store
(SQLite and PostgreSQL), the real vendor simulator over HTTP, the real `coterm reconcile` and
`coterm run` and the API. Drift made behind coterm's back is found, once; a count the vendor
gave while a call was in flight is never taken for drift; staff's resolve changes the seats
the rules read."""

import json
import os
import subprocess
import sys
import threading
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from aggregates import commands, transfer_commands
from aggregates.context import Context
from aggregates.reconciliation import Reconciliation
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer
from processor.consume.runner import run
from processor.dev.vendor_sim import Faults, VendorSimulator
from processor.outbox.vendor_client import VendorClient
from processor.reconcile.sweep import Interrupted, Sweep
from processor.store.opening import open_store
from projections.staff import Staff
from tests import seed
from tests.harness import Scenario, downgrade, seed_reference_data, upgrade
from tests.http_server import call, serving
from tests.waiting import wait_for

CUSTOMERS, PER_CUSTOMER = 100, 100  # 10,000 subscriptions
DRIFTED = 50
IN_FLIGHT = 30
from tests.staff_users import ADMIN, SUPPORT
COTERM = str(Path(sys.executable).with_name("coterm"))


def _ctx(n: int, day: str = "2026-01-05") -> Context:
    return Context(f"seed-{n}", datetime.fromisoformat(f"{day}T09:00:00+00:00"), datetime.now(timezone.utc))


def seed_subscriptions(app: Any) -> dict[str, int]:
    """100 customers with 100 subscriptions each, in a few large units of work; coterm's seats."""
    uow = app.unit_of_work()
    commands.define_product(uow, _ctx(0), "nce", "M365 E3", False, False)
    app.commit(uow)
    seats: dict[str, int] = {}
    for c in range(CUSTOMERS):
        uow = app.unit_of_work()
        customer = f"rc{c:03}"
        commands.register_customer(uow, _ctx(c), customer, partner_id="p", name=customer, channel="direct",
                                   distributor_id=None, data_complete=True)
        for k in range(PER_CUSTOMER):
            sub = f"{customer}-s{k}"
            seats[sub] = 10 + (c + k) % 40
            commands.purchase_subscription(uow, _ctx(c), sub, customer, product_id="nce", plan_id="plan-nce",
                                           billing_model="annual", management="partner_managed", seats=seats[sub],
                                           term_months=12, start_date=date(2026, 1, 5), end_date=date(2027, 1, 4),
                                           subscription_key=f"KEY-{sub}", resource_count=1)
        app.commit(uow)
    return seats


def set_vendor_seats(vendor: VendorSimulator, seats: dict[str, int]) -> None:
    request = urllib.request.Request(f"{vendor.url}/_sim/seats", data=json.dumps(seats).encode(), method="POST")
    urllib.request.urlopen(request, timeout=30).read()


def reconcile(store: str, vendor: VendorSimulator, *extra: str) -> dict[str, Any]:
    done = subprocess.run([COTERM, "reconcile", "--json", "--rate", "100000", *extra], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COTERM_STORE": store, "COTERM_VENDOR_URL": vendor.url})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def drift_events(app: Any) -> list[Any]:
    topics = [get_topic(cls) for cls in (Subscription.DriftFound, Subscription.DriftCleared)]
    return list(app.recorder.select_notifications(start=1, limit=1_000_000, topics=topics))


@pytest.mark.integration
def test_a_pass_over_10000_subscriptions_finds_the_50_drifted_once(store: str, vendor: VendorSimulator) -> None:
    app = open_store(store)
    try:
        seats = seed_subscriptions(app)
        ops = []
        for c in range(IN_FLIGHT):  # decided transfers: in flight on their source, 2 seats each
            op, customer = f"rc-op-{c}", f"rc{c:03}"
            for side in ("downgrade", "upgrade"):
                order = {"operation_id": op, "order_id": f"{op}-{side}", "customer_id": customer, "seats": 2,
                         "requested_by": "ops"}
                order.update({"subscription_id": f"{customer}-s0"} if side == "downgrade" else {"target": {
                    "kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": "nce",
                    "plan_id": "plan-nce", "term_months": 12}})
                seed.run(app, transfer_commands.add_half, side, order)
            ops.append(op)
        vendor_seats = dict(seats)
        for c in range(IN_FLIGHT):  # the vendor has already carried them out; coterm has not heard yet
            vendor_seats[f"rc{c:03}-s0"] -= 2
            vendor_seats[f"rc-op-{c}-new"] = 2
        drifted = sorted(seats)[7::len(seats) // DRIFTED][:DRIFTED]  # changed in the vendor's own portal
        assert len(drifted) == DRIFTED and not {d for d in drifted if d.endswith("-s0") and int(d[2:5]) < IN_FLIGHT}
        for n, sub in enumerate(drifted):
            vendor_seats[sub] = seats[sub] + (n % 3) + 1 if n % 2 else seats[sub] - 1
        set_vendor_seats(vendor, vendor_seats)

        def answer_the_calls() -> None:  # once the pass has read past them, the vendor's answers arrive
            wait_for(lambda: vendor.state.reads >= len(seats) - IN_FLIGHT, timeout=240, what="the pass reading on")
            for op in ops:
                seed.vendor(app, transfer_commands.record_vendor_success, op, f"V-{op}", 1, 50)

        answering = threading.Thread(target=answer_the_calls)
        answering.start()
        first = reconcile(store, vendor)
        answering.join()
        counts = first["counts"]
        assert counts["drift"] == DRIFTED and counts["checked"] == len(seats), counts
        assert counts["agrees"] == len(seats) - DRIFTED and counts["revisited"] == IN_FLIGHT, counts
        assert counts["in_flight"] == 0 and counts["vendor_unknown"] == 0 and counts["known"] == 0, counts
        found = {e.originator_id: json.loads(e.state) for e in drift_events(app)}
        expected = {Subscription.create_id(s): (seats[s], vendor_seats[s]) for s in drifted}
        assert {k: (v["coterm_seats"], v["vendor_seats"]) for k, v in found.items()} == expected

        second = reconcile(store, vendor)  # nothing changed: nothing new on record
        assert second["counts"]["drift"] == 0 and second["counts"]["known"] == DRIFTED, second["counts"]
        assert second["counts"]["agrees"] == len(seats) + IN_FLIGHT - DRIFTED  # the new targets too
        assert len(drift_events(app)) == DRIFTED

        set_vendor_seats(vendor, {s: seats[s] for s in drifted[:5]})  # fixed in the vendor's portal
        third = reconcile(store, vendor)
        assert third["counts"]["cleared"] == 5 and third["counts"]["known"] == DRIFTED - 5, third["counts"]
        assert len(drift_events(app)) == DRIFTED + 5
    finally:
        app.close()


@pytest.mark.integration
def test_staff_see_drift_and_resolve_or_explain_it(store: str, vendor: VendorSimulator, staff: Staff) -> None:
    app = open_store(store)
    try:
        seed.customer_with_subscriptions(app, "c1", seats=100)  # c1-s1 and c1-epp, 100 seats each
        seed.customer_with_subscriptions(app, "c2", seats=100)
        set_vendor_seats(vendor, {"c1-s1": 40, "c1-epp": 100, "c2-s1": 120, "c2-epp": 90})
        sweep = Sweep(app, VendorClient(vendor.url), "test pass", rate_per_s=0)
        assert sweep.run().counts["drift"] == 3
        with serving(app, staff) as api:
            status, listed = call(f"{api}/api/drift", token=SUPPORT)
            assert status == 200 and listed["counts"] == {"open": 3, "explained": 0, "resolved": 0, "cleared": 0}
            assert {i["subscription_id"]: (i["seats"], i["drift"]["vendor_seats"]) for i in listed["items"]} == {
                "c1-s1": (100, 40), "c2-s1": (100, 120), "c2-epp": (100, 90)}
            status, page = call(f"{api}/api/drift?limit=2", token=SUPPORT)
            status, rest = call(f"{api}/api/drift?limit=2&cursor={page['next_cursor']}", token=SUPPORT)
            assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
            assert {i["subscription_id"] for i in page["items"] + rest["items"]} == {"c1-s1", "c2-s1", "c2-epp"}
            assert call(f"{api}/api/drift?customer=c2", token=SUPPORT)[1]["counts"]["open"] == 3  # counts: all
            assert len(call(f"{api}/api/drift?customer=c2", token=SUPPORT)[1]["items"]) == 2
            assert call(f"{api}/api/drift?status=gone", token=SUPPORT)[0] == 400
            assert "coterm_vendor_drift_subscriptions 3.0" in _metrics(api)

            why = {"reason": "seats removed in the vendor's portal by the customer"}
            assert call(f"{api}/api/drift/c1-s1/resolve", "POST", why, token=SUPPORT)[0] == 403  # no privilege
            status, done = call(f"{api}/api/drift/c1-s1/resolve", "POST", why, token=ADMIN)
            assert status == 200 and done["seats"] == 40 and done["drift"]["status"] == "resolved", done
            assert done["by"] == "alice" and done["drift"]["why"] == why["reason"]
            status, again = call(f"{api}/api/drift/c1-s1/resolve", "POST", why, token=ADMIN)
            assert status == 409 and again["error"] == "NO_DRIFT"
            status, explained = call(f"{api}/api/drift/c2-epp/explain", "POST", {"reason": "trial seats"}, token=ADMIN)
            assert status == 200 and explained["seats"] == 100 and explained["drift"]["status"] == "explained"
            assert call(f"{api}/api/drift/nope/resolve", "POST", why, token=ADMIN)[0] == 404
            assert call(f"{api}/api/drift/c2-s1/resolve", "POST", {"reason": ""}, token=ADMIN)[0] == 400

            seed.operation(app, "op-c2", "parked", customer="c2")  # a parked call holds c2-s1's seats
            status, refused = call(f"{api}/api/drift/c2-s1/resolve", "POST", why, token=ADMIN)
            assert status == 409 and refused["error"] == "TRANSFER_IN_FLIGHT"

            status, one = call(f"{api}/api/drift/c1-s1", token=SUPPORT)
            assert [h["type"] for h in one["history"]] == ["DriftFound", "DriftResolved"]
            assert one["history"][1]["data"]["by"] == "alice" and one["seats"] == 40
            wait_for(lambda: call(f"{api}/api/drift", token=SUPPORT)[1]["counts"] == {
                "open": 1, "explained": 1, "resolved": 1, "cleared": 0}, what="the counts after the actions")
            assert "coterm_vendor_drift_subscriptions 1.0" in _metrics(api)
            status, passes = call(f"{api}/api/reconciliation", token=SUPPORT)
            assert passes["current"] is None and passes["last"]["counts"]["drift"] == 3
        # Rules read the resolved count: 50 of the vendor's 40 seats cannot move.
        seed.half(app, "downgrade", "after-resolve", "c1", seats=50)
        seed.half(app, "upgrade", "after-resolve", "c1", seats=50)
        refused_transfer = app.repository.get(Transfer.create_id("after-resolve"))
        assert refused_transfer.outcome["reason_code"] == "INSUFFICIENT_SEATS"
        counts = Sweep(app, VendorClient(vendor.url), "test pass", rate_per_s=0, revisit_for_s=0).run().counts
        assert counts["drift"] == 0 and counts["known"] == 1 and counts["in_flight"] == 1, counts  # c2-s1 in flight
        assert counts["agrees"] == 2  # c1-s1, resolved; c1-epp
    finally:
        app.close()


def _metrics(api: str) -> str:
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.integration
def test_a_stopped_pass_resumes_where_it_stopped(tmp_path: Path, vendor: VendorSimulator) -> None:
    app = open_store(f"{tmp_path}/coterm.sqlite")
    try:
        uow = app.unit_of_work()
        commands.register_customer(uow, _ctx(1), "c1", partner_id="p", name="c1", channel="direct",
                                   distributor_id=None, data_complete=True)
        for k in range(1200):
            commands.purchase_subscription(uow, _ctx(1), f"s{k}", "c1", product_id="nce", plan_id="plan-nce",
                                           billing_model="annual", management="partner_managed", seats=5,
                                           term_months=12, start_date=date(2026, 1, 5), end_date=date(2027, 1, 4),
                                           subscription_key=f"KEY-{k}", resource_count=1)
        app.commit(uow)
        set_vendor_seats(vendor, {f"s{k}": 5 if k != 1100 else 6 for k in range(1200)})
        client = VendorClient(vendor.url)
        with pytest.raises(Interrupted):  # e.g. the leadership moved after 700 reads
            Sweep(app, client, "first", 0, may_run=lambda: vendor.state.reads < 700).run()
        stored = app.repository.get(Reconciliation.create_id()).current
        assert stored["after"] and stored["counts"]["checked"] == 500  # progress kept after each page of 500
        reads = vendor.state.reads
        report = Sweep(app, client, "second", 0).run()
        assert report.resumed and report.pass_id == stored["pass_id"]
        assert vendor.state.reads - reads == 700  # the 700 after the kept progress, not 1,200 again
        assert report.counts["checked"] == 1200 and report.counts["drift"] == 1
        assert app.repository.get(Reconciliation.create_id()).last["pass_id"] == report.pass_id
    finally:
        app.close()


@pytest.mark.integration
def test_coterm_run_reconciles_on_schedule_while_calls_are_in_flight(sqlite_scenario: Scenario,
                                                                       vendor: VendorSimulator) -> None:
    s = sqlite_scenario
    customers = [f"sc{n}" for n in range(12)]
    for customer in customers:
        seed_reference_data(s, customer)  # s1: 10 seats, t1: 5
    s.process()
    set_vendor_seats(vendor, {**{f"{c}-s1": 10 for c in customers}, **{f"{c}-t1": 5 for c in customers},
                              "sc0-t1": 7})  # sc0-t1: 7 in the vendor's own portal
    vendor.state.faults = Faults(delay_s=1.0)  # calls stay in flight while passes read
    s.with_settings(reconcile_every_s=0.5, reconcile_rate=200.0)
    app, stop = s.open_store(), threading.Event()
    worker = threading.Thread(target=run, args=(app, s.settings, s.bootstrap, stop), daemon=True)
    worker.start()
    try:
        for n, customer in enumerate(customers[1:]):
            s.send("transfer.downgrade_ordered", downgrade(f"sch-{n}", customer, seats=2), flush=False)
            s.send("transfer.upgrade_ordered", upgrade(f"sch-{n}", customer, seats=2, existing=True))
        passes = wait_for(lambda: (p := app.unit_of_work().get(Reconciliation, Reconciliation.create_id())) and p.last and p,
                          timeout=120, what="a scheduled pass finished")
        wait_for(lambda: len(vendor.state.accepted) == len(customers) - 1, timeout=120, what="every transfer done")
    finally:
        stop.set()
        worker.join(timeout=60)
    try:
        assert passes.last["by"].startswith("coterm run ")
        found = {e.originator_id: json.loads(e.state) for e in drift_events(app)}
        assert {k: (v["coterm_seats"], v["vendor_seats"]) for k, v in found.items()} == {
            Subscription.create_id("sc0-t1"): (5, 7)}  # and nothing on the subscriptions whose calls were in flight
        finished = [e.counts for e in app.events.get(Reconciliation.create_id()) if type(e).__name__ == "PassFinished"]
        assert sum(c["drift"] for c in finished) == 1 and sum(c["revisited"] for c in finished) > 0, finished
    finally:
        app.close()
