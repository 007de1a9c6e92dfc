"""CPU of one vendor call on coterm's side: the vendor client (body, limiter, HTTP, outcome) against
the vendor simulator in a process of its own, on one kept-alive connection.

  python -m bench.vendor_call [--calls 3000] [--threads 1]

Each call is a new operation the simulator accepts (201). The figure is the CPU time of the
calling threads only (the simulator's is not coterm's), per call; wall time per call beside it.
"""

import argparse
import threading
import time

from bench.running import VendorSim
from processor.outbox.vendor_client import VendorClient


def request(n: int, tag: str) -> dict[str, object]:
    return {"operation_id": f"{tag}-{n}", "customer_id": "c", "seats": 1,
            "source": {"subscription_id": f"{tag}-s{n % 50}", "seats_before": 1_000_000, "seats_after": 999_999},
            "target": {"kind": "new_subscription", "subscription_id": f"{tag}-t{n}", "seats_before": 0, "seats_after": 1,
                       "plan_id": "plan-b", "start_date": "2026-01-05", "renewal_date": "2027-01-04",
                       "billing_start_date": "2026-11-03"}}


def run(url: str, calls: int, threads: int, tag: str) -> tuple[float, float, dict[bool, int]]:
    """CPU µs per call (all calling threads), wall µs per call, outcomes by ok."""
    client = VendorClient(url)
    outcomes: dict[bool, int] = {True: 0, False: 0}
    cpu = [0.0] * threads
    lock = threading.Lock()

    def work(k: int) -> None:
        for n in range(k, 100 + k, threads):  # warm: the connection, the first-call imports
            client.send(request(n, f"{tag}-warm"))
        started = time.thread_time()
        for n in range(k, calls, threads):
            ok = client.send(request(n, tag)).ok
            with lock:
                outcomes[ok] += 1
        cpu[k] = time.thread_time() - started
        client.close()

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    wall = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(cpu) * 1e6 / calls, (time.perf_counter() - wall) * 1e6 / calls, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sim = VendorSim()
    try:
        for r in range(args.repeat):
            cpu, wall, outcomes = run(sim.url, args.calls, args.threads, f"vc{r}-{time.time_ns()}")
            if outcomes[False]:
                raise SystemExit(f"the simulator refused {outcomes[False]} of {args.calls} calls: not the path measured")
            print(f"  round {r + 1}: client CPU us/call {cpu:,.1f}, wall us/call {wall:,.1f}", flush=True)
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
