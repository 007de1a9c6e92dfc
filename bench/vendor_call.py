"""CPU of one vendor call on coterm's side: the vendor client (body, limiter, HTTP, outcome) against
the vendor simulator in a process of its own, on one kept-alive connection.

  python -m bench.vendor_call [--calls 3000]

Each call is a new operation the simulator accepts (201). The figure is the CPU time of this
process (the calling threads and the client's calls thread, `vendor_calls`; the simulator's is
not coterm's), per call, warm-up excluded; wall time per call beside it.
"""

import argparse
import queue
import time

from bench.running import VendorSim
from processor.outbox.vendor_client import VendorClient, VendorOutcome


def request(n: int, tag: str) -> dict[str, object]:
    return {"operation_id": f"{tag}-{n}", "customer_id": "c", "seats": 1,
            "source": {"subscription_id": f"{tag}-s{n % 50}", "seats_before": 1_000_000, "seats_after": 999_999},
            "target": {"kind": "new_subscription", "subscription_id": f"{tag}-t{n}", "seats_before": 0, "seats_after": 1,
                       "plan_id": "plan-b", "start_date": "2026-01-05", "renewal_date": "2027-01-04",
                       "billing_start_date": "2026-11-03"}}


def run(url: str, calls: int, tag: str) -> tuple[float, float, dict[bool, int]]:
    """CPU µs per call (the whole process), wall µs per call, outcomes by ok: every call handed
    over at once and waited for together, as the outbox's rounds hand them over."""
    client = VendorClient(url)
    outcomes: dict[bool, int] = {True: 0, False: 0}

    def together(first: int, last: int, tag: str) -> None:
        settled: queue.SimpleQueue[VendorOutcome | None] = queue.SimpleQueue()
        for n in range(first, last):
            client.submit(request(n, tag), settled.put)
        for _ in range(first, last):
            outcome = settled.get(timeout=60)
            outcomes[bool(outcome and outcome.ok)] += 1

    together(0, 100, f"{tag}-warm")  # the connections, the first-call imports
    outcomes[True] = 0
    cpu, wall = time.process_time(), time.perf_counter()
    together(0, calls, tag)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    client.shutdown()
    return cpu * 1e6 / calls, wall * 1e6 / calls, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sim = VendorSim()
    try:
        for r in range(args.repeat):
            cpu, wall, outcomes = run(sim.url, args.calls, f"vc{r}-{time.time_ns()}")
            if outcomes[False]:
                raise SystemExit(f"the simulator refused {outcomes[False]} of {args.calls} calls: not the path measured")
            print(f"  round {r + 1}: client CPU us/call {cpu:,.1f}, wall us/call {wall:,.1f}", flush=True)
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
