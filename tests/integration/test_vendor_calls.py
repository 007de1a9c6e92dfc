"""The vendor client's calls on one thread (`processor.outbox.vendor_calls`), against the simulator
over real HTTP: many calls out together, each settled once, and a stop that never loses a call.
(The rules each attempt is judged by are `test_vendor_client`'s, which run through the same thread.)"""

import queue
import threading
import time

from processor.dev.vendor_sim import Faults, VendorSimulator
from processor.outbox.throttle import Limiter
from processor.outbox.vendor_client import VendorClient, VendorOutcome
from tests.waiting import wait_for

REQUEST = {"customer_id": "c", "seats": 1,
           "source": {"subscription_id": "s", "seats_before": 10, "seats_after": 9},
           "target": {"kind": "existing_subscription", "subscription_id": "t", "seats_before": 1, "seats_after": 2}}


def _submit(client: VendorClient, n: int, settled: "queue.SimpleQueue[tuple[str, VendorOutcome | None]]",
            started: list[str] | None = None, threads: set[int] | None = None) -> None:
    op = f"op-{n}"

    def done(outcome: VendorOutcome | None) -> None:
        if threads is not None:
            threads.add(threading.get_ident())
        settled.put((op, outcome))

    client.submit({**REQUEST, "operation_id": op}, done, on_start=(lambda: started.append(op)) if started is not None else None)


def test_many_calls_go_out_together_from_one_thread_each_settled_once(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(delay_s=0.3)  # slow answers: the calls pile up
    client = VendorClient(vendor.url, limiter=Limiter(16))
    settled: queue.SimpleQueue[tuple[str, VendorOutcome | None]] = queue.SimpleQueue()
    started: list[str] = []
    threads: set[int] = set()
    at = time.monotonic()
    try:
        for n in range(64):
            _submit(client, n, settled, started, threads)
        outcomes = dict(settled.get(timeout=30) for _ in range(64))
        took = time.monotonic() - at
    finally:
        client.shutdown()
    assert len(threads) == 1 and threading.get_ident() not in threads  # one thread for all of them, not one each
    assert sorted(outcomes) == sorted(f"op-{n}" for n in range(64)) and all(o and o.ok for o in outcomes.values())
    assert settled.empty() and sorted(started) == sorted(outcomes)  # each settled once, each started once
    assert len(vendor.state.accepted) == 64 and len(vendor.state.requests) == 64
    assert 8 <= vendor.state.most_open <= 16  # together, as many as the limiter lets out
    assert took < 64 * 0.3 / 4  # not one after another


def test_a_stop_ends_every_call_not_settled_and_any_call_after_it(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(hang_s=3.0)  # no answer before the stop
    client = VendorClient(vendor.url, timeout_s=5.0, limiter=Limiter(4))
    settled: queue.SimpleQueue[tuple[str, VendorOutcome | None]] = queue.SimpleQueue()
    for n in range(8):  # four out, four waiting for a slot
        _submit(client, n, settled)
    wait_for(lambda: len(vendor.state.requests) >= 4, 10, "four calls out")
    at = time.monotonic()
    client.shutdown()
    assert time.monotonic() - at < 2.0  # not waiting for the vendor's answers
    outcomes = [settled.get(timeout=5) for _ in range(8)]
    assert sorted(op for op, _ in outcomes) == sorted(f"op-{n}" for n in range(8))
    assert all(outcome is None for _, outcome in outcomes)  # each stays requested in the store
    assert client.limiter.out == 0
    _submit(client, 99, settled)
    assert settled.get(timeout=1) == ("op-99", None)


def test_a_call_that_cannot_start_ends_alone_and_the_others_go_on(vendor: VendorSimulator) -> None:
    client = VendorClient(vendor.url, limiter=Limiter(2))
    settled: queue.SimpleQueue[tuple[str, VendorOutcome | None]] = queue.SimpleQueue()
    try:
        client.submit({**REQUEST, "operation_id": "bad", "seats": object()}, lambda o: settled.put(("bad", o)))
        _submit(client, 1, settled)
        outcomes = dict(settled.get(timeout=10) for _ in range(2))
    finally:
        client.shutdown()
    assert outcomes["bad"] is None  # not encodable: it stays requested, with a log line
    assert outcomes["op-1"] is not None and outcomes["op-1"].ok and client.limiter.out == 0
