"""How fast a consumer group on the bundled broker recovers from a SIGKILL, by consumer setting.

  python -m bench.group_recovery [--kills 5]          (make bench-group)

Three consumer processes (plain kafka-python consumers with coterm's poll settings, nothing
else) share a 6-partition topic.
One is SIGKILLed and restarted at once, several times; each member reports its assignment
through a file. Printed per setting: seconds from the kill until every partition is held
again (p50, max), and how long the surviving members held nothing during it (they stop
consuming while a rebalance is in progress). Settings tried: the session timeout coterm uses,
the 6 s it used before, and static membership (`group_instance_id`, kept across a restart).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from processor.broker import BundledBroker, ensure_topics

PARTITIONS = 6
MEMBER = r"""
import json, os, sys, time
from kafka import KafkaConsumer
bootstrap, group, topic, out, session_ms, instance, cooperative = sys.argv[1:8]
options = {"session_timeout_ms": int(session_ms), "heartbeat_interval_ms": max(100, int(session_ms) // 6)}
if instance != "-":
    options["group_instance_id"] = instance
if cooperative == "1":
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    options["partition_assignment_strategy"] = [CooperativeStickyAssignor]
consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         max_poll_interval_ms=30000, fetch_max_wait_ms=200, **options)
consumer.subscribe([topic])
while True:
    consumer.poll(timeout_ms=100)
    held = sorted(tp.partition for tp in consumer.assignment())
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"at": time.time(), "held": held}, f)
    os.replace(tmp, out)
"""


def held(files: list[Path], alive: set[int]) -> tuple[set[int], dict[int, int]]:
    union: set[int] = set()
    per: dict[int, int] = {}
    for slot in alive:
        try:
            state = json.loads(files[slot].read_text())
        except (OSError, ValueError):
            continue
        if time.time() - state["at"] < 1.0:
            union |= set(state["held"])
            per[slot] = len(state["held"])
    return union, per


def trial(bootstrap: str, session_ms: int, static: bool, kills: int, tmp: str,
          cooperative: bool = False) -> tuple[list[float], list[float]]:
    group, topic = f"g-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic], partitions=PARTITIONS)
    files = [Path(tmp) / f"{group}-{slot}.json" for slot in range(3)]

    def start(slot: int) -> subprocess.Popen[bytes]:
        instance = f"member-{slot}" if static else "-"
        return subprocess.Popen([sys.executable, "-c", MEMBER, bootstrap, group, topic, str(files[slot]),
                                 str(session_ms), instance, "1" if cooperative else "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    procs = [start(slot) for slot in range(3)]
    recover, idle = [], []
    try:
        deadline = time.monotonic() + 60
        while len(held(files, {0, 1, 2})[0]) < PARTITIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        for k in range(kills):
            time.sleep(2)
            victim = k % 3
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            files[victim].unlink(missing_ok=True)
            killed = time.monotonic()
            procs[victim] = start(victim)
            survivors_idle = 0.0
            while time.monotonic() - killed < 60:
                union, per = held(files, {0, 1, 2})
                if any(per.get(s, 0) == 0 for s in {0, 1, 2} - {victim}):
                    survivors_idle += 0.05
                if len(union) == PARTITIONS and len(per) == 3:
                    break
                time.sleep(0.05)
            recover.append(time.monotonic() - killed)
            idle.append(survivors_idle)
    finally:
        for proc in procs:
            proc.kill()
    return recover, idle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="*", help="run only these settings (0-based)")
    args = parser.parse_args()
    settings = [("session 3 s (coterm)", 3000, False, False), ("session 6 s (before)", 6000, False, False),
                ("session 3 s, static membership", 3000, True, False),
                ("session 3 s, CooperativeStickyAssignor", 3000, False, True)]
    print("| consumer setting | kill -> all partitions held, p50 / max | survivors holding nothing, p50 / max |")
    print("| --- | ---: | ---: |")
    with BundledBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for n, (label, session_ms, static, cooperative) in enumerate(settings):
            if args.only and n not in args.only:
                continue
            recover, idle = trial(broker.bootstrap, session_ms, static, args.kills, tmp, cooperative)
            print(f"| {label} | {statistics.median(recover):.1f} / {max(recover):.1f} s | "
                  f"{statistics.median(idle):.1f} / {max(idle):.1f} s |", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
