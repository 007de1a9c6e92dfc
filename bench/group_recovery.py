"""How a consumer group rides out a SIGKILL and a SIGSTOP, by consumer setting, on Apache Kafka.

  python -m bench.group_recovery [--faults 4] [--only N ...] [--broker kafka|tansu]   (make bench-group)

Three consumer processes (plain kafka-python consumers with coterm's poll settings, nothing
else) share a 6-partition topic that a producer writes 100 messages/s to. Each member reports
its assignment and how many records it has read through a file. Per setting:
- a member is SIGKILLed and restarted at once: seconds until every partition is held again, and
  until the restarted member holds partitions again (with static membership, its own: Kafka
  hands them back without a rebalance if it returns within the session timeout);
- a member is SIGKILLed and not restarted: seconds until the survivors hold every partition;
- in both faults, the longest time the *surviving* members read nothing (their stall);
- a member is SIGSTOPped for 12 s (a long GC pause, a frozen VM) and then resumed.
Settings: session timeout, rebalance timeout (kafka-python's `max_poll_interval_ms`, which it
sends as the JoinGroup rebalance timeout), static membership, the cooperative assignor. The
broker is one Apache Kafka node from its Maven Central jars (`processor/dev/kafka_cluster.py`),
or the bundled Tansu broker with `--broker tansu`.
"""

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kafka import KafkaProducer

from processor.dev.broker import BundledBroker
from processor.dev.kafka_cluster import KafkaCluster
from processor.kafka_io import ensure_topics

PARTITIONS = 6
PAUSE_S = 12.0
MEMBER = r"""
import json, os, sys, time
from kafka import KafkaConsumer
bootstrap, group, topic, out, session_ms, rebalance_ms, instance, cooperative = sys.argv[1:9]
options = {"session_timeout_ms": int(session_ms), "heartbeat_interval_ms": max(100, int(session_ms) // 6),
           "max_poll_interval_ms": int(rebalance_ms)}
if instance != "-":
    options["group_instance_id"] = instance
if cooperative == "1":
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    options["partition_assignment_strategy"] = [CooperativeStickyAssignor]
consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         fetch_max_wait_ms=200, auto_offset_reset="latest", **options)
consumer.subscribe([topic])
consumed = 0
while True:
    consumed += sum(len(r) for r in consumer.poll(timeout_ms=100).values())
    held = sorted(tp.partition for tp in consumer.assignment())
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"at": time.time(), "held": held, "consumed": consumed}, f)
    os.replace(tmp, out)
"""


class Group:
    def __init__(self, bootstrap: str, tmp: str, session_ms: int, rebalance_ms: int, static: bool,
                 cooperative: bool) -> None:
        self.bootstrap = bootstrap
        self.group, self.topic = f"g-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, [self.topic], partitions=PARTITIONS)
        self.files = [Path(tmp) / f"{self.group}-{slot}.json" for slot in range(3)]
        self.args = (str(session_ms), str(rebalance_ms), "1" if cooperative else "0")
        self.static = static
        self.procs = [self.start(slot) for slot in range(3)]
        self.producing = threading.Event()
        threading.Thread(target=self._produce, daemon=True).start()

    def start(self, slot: int) -> subprocess.Popen[bytes]:
        session, rebalance, cooperative = self.args
        instance = f"member-{slot}" if self.static else "-"
        return subprocess.Popen([sys.executable, "-c", MEMBER, self.bootstrap, self.group, self.topic,
                                 str(self.files[slot]), session, rebalance, instance, cooperative],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _produce(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        n = 0
        while not self.producing.is_set():
            producer.send(self.topic, value=b"x", partition=n % PARTITIONS)
            n += 1
            time.sleep(0.01)
        producer.close()

    def state(self, slot: int) -> dict | None:  # type: ignore[type-arg]
        try:
            return json.loads(self.files[slot].read_text())
        except (OSError, ValueError):
            return None

    def held(self, slots: set[int] = frozenset({0, 1, 2})) -> set[int]:  # type: ignore[assignment]
        union: set[int] = set()
        for slot in slots:
            state = self.state(slot)
            if state and time.time() - state["at"] < 1.0:
                union |= set(state["held"])
        return union

    def consumed(self, slots: set[int]) -> int:
        return sum((self.state(s) or {"consumed": 0})["consumed"] for s in slots)

    def stop(self) -> None:
        self.producing.set()
        for proc in self.procs:
            proc.kill()


def watch(group: Group, survivors: set[int], since: float, until: float | None, done: object,
          also: object = None) -> tuple[float, float, float | None]:
    """(seconds until `done()` held, the survivors' longest stretch without reading a record,
    seconds until `also()` held), watched until `until` (monotonic) or until both held and 2 s more."""
    last, last_change, stall = group.consumed(survivors), time.monotonic(), 0.0
    finished = also_at = None
    while time.monotonic() - since < 60:
        now = time.monotonic()
        count = group.consumed(survivors)
        if count != last:
            last, last_change = count, now
        stall = max(stall, now - last_change)
        if finished is None and done():  # type: ignore[operator]
            finished = now - since
        if also is not None and also_at is None and also():  # type: ignore[operator]
            also_at = now - since
        settled = finished is not None and (also is None or also_at is not None)
        if (until is None and settled and now - since > max(finished or 0, also_at or 0) + 2) or (until and now > until):
            break
        time.sleep(0.05)
    return (finished if finished is not None else round(time.monotonic() - since, 1)), stall, also_at


def trial(bootstrap: str, tmp: str, faults: int, session_ms: int, rebalance_ms: int, static: bool = False,
          cooperative: bool = False) -> dict[str, list[float]]:
    group = Group(bootstrap, tmp, session_ms, rebalance_ms, static, cooperative)
    found: dict[str, list[float]] = {"recover": [], "back": [], "kill_stall": [], "moved": [], "pause_stall": [],
                                     "pause_moved": []}
    try:
        deadline = time.monotonic() + 60
        while len(group.held()) < PARTITIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        for k in range(faults):
            time.sleep(3)
            victim = k % 3
            survivors = {0, 1, 2} - {victim}
            group.procs[victim].send_signal(signal.SIGKILL)
            group.procs[victim].wait()
            group.files[victim].unlink(missing_ok=True)
            killed = time.monotonic()
            group.procs[victim] = group.start(victim)
            recover, stall, back = watch(group, survivors, killed, None, lambda: len(group.held()) == PARTITIONS,
                                         lambda v=victim: bool(group.held({v})))
            found["recover"].append(recover)
            found["kill_stall"].append(stall)
            found["back"].append(back if back is not None else 60.0)
        victim = 0  # killed for good: how long until the others hold its partitions
        time.sleep(3)
        group.procs[victim].send_signal(signal.SIGKILL)
        group.procs[victim].wait()
        group.files[victim].unlink(missing_ok=True)
        killed = time.monotonic()
        found["moved"].append(watch(group, {1, 2}, killed, None, lambda: len(group.held({1, 2})) == PARTITIONS)[0])
        group.procs[victim] = group.start(victim)
        deadline = time.monotonic() + 60
        while (len(group.held()) < PARTITIONS or not group.held({victim})) and time.monotonic() < deadline:
            time.sleep(0.1)
        for k in range(max(1, faults // 2)):
            time.sleep(3)
            victim = (k + 1) % 3
            group.procs[victim].send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            survivors = {0, 1, 2} - {victim}
            moved, stall, _ = watch(group, survivors, stopped, stopped + PAUSE_S,
                                    lambda: len(group.held(survivors)) == PARTITIONS)  # noqa: B023
            group.procs[victim].send_signal(signal.SIGCONT)
            found["pause_stall"].append(stall)
            found["pause_moved"].append(moved)
    finally:
        group.stop()
    return found


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {max(values):.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=4, help="kills per setting (and half as many pauses)")
    parser.add_argument("--only", type=int, nargs="*", help="run only these settings (0-based)")
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka",
                        help="Apache Kafka from its Maven Central jars (default) or the bundled Tansu broker")
    args = parser.parse_args()
    settings = [("session 10 s, rebalance 10 s, static membership (coterm's default)", 10_000, 10_000, True, False),
                ("session 10 s, rebalance 10 s, dynamic", 10_000, 10_000, False, False),
                ("session 6 s, rebalance 10 s, static membership (the storm's)", 6000, 10_000, True, False),
                ("session 6 s, rebalance 10 s, dynamic", 6000, 10_000, False, False),
                ("session 6 s, rebalance 10 s, dynamic, CooperativeStickyAssignor", 6000, 10_000, False, True),
                ("session 6 s, rebalance 10 s, static, CooperativeStickyAssignor", 6000, 10_000, True, True)]
    print(f"| consumer setting | kill + restart -> all partitions held | restart -> its partitions back | "
          f"survivors stalled, kill | kill, no restart -> survivors hold all | {PAUSE_S:g} s pause -> "
          "survivors hold all partitions | survivors stalled, pause |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    broker_cm = KafkaCluster() if args.broker == "kafka" else BundledBroker()
    with broker_cm as broker, tempfile.TemporaryDirectory() as tmp:
        print(f"(broker: {'Apache Kafka ' + broker.version if args.broker == 'kafka' else 'bundled Tansu'})", flush=True)
        for n, (label, session_ms, rebalance_ms, static, cooperative) in enumerate(settings):
            if args.only and n not in args.only:
                continue
            found = trial(broker.bootstrap, tmp, args.faults, session_ms, rebalance_ms, static, cooperative)
            moved = spread(found["pause_moved"]) if min(found["pause_moved"]) < PAUSE_S else "not during the pause"
            print(f"| {label} | {spread(found['recover'])} | {spread(found['back'])} | {spread(found['kill_stall'])} | "
                  f"{spread(found['moved'])} | {moved} | {spread(found['pause_stall'])} |", flush=True)
    print("(p50 / max over the faults; 'stalled': the longest stretch in which the surviving members read nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
