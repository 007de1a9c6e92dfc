"""Kill storm: several `coterm run` processes in one group on PostgreSQL, SIGKILLed at random
while a stream of transfers, migrations and a bulk migration (with a tick a day for 21 days)
flows, then every guarantee checked.

  python -m tests.storm [--transfers 2000] [--migrations 300] [--kills 50] [--processes 3]   (make storm)

`tests/integration/test_kill_storm.py` runs a small one in `make test`. Everything is real:
the bundled broker (6 partitions), PostgreSQL, the HTTP vendor simulator, `coterm run` as
subprocesses. Every 4th kill aims at the processor whose outbox holds the leadership.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg
from kafka import KafkaProducer

from aggregates.bulk import bulk_request_id
from processor.broker import BundledBroker, ensure_topics, free_port
from processor.kafka_io import read_topic
from processor.store import open_store
from processor.vendor_sim import VendorSimulator

POSTGRES_URL = os.environ.get("COTERM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
PARTITIONS = 6
SOURCE_SEATS = 1000
FINAL_TRANSFER = {"transfer.completed", "transfer.failed", "transfer.cancelled"}
BULK_ID, BULK_DAY = "storm-bulk", date(2026, 11, 2)


@dataclass
class Plan:
    """What was published and what each operation must end as."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value), in publishing order
    reference: int = 0
    transfers: dict[str, str] = field(default_factory=dict)  # operation_id -> expected final result type
    migrations: set[str] = field(default_factory=set)
    seats: dict[str, int] = field(default_factory=dict)  # customer -> seats before
    bulk_requests: dict[str, str] = field(default_factory=dict)  # request_id -> planned type, first and scheduled
    bulk_customers: int = 0
    bulk_at: int = 0  # messages from here on (the bulk and its ticks) wait until its customers are applied

    def outcome_keys(self) -> set[str]:
        """Everything that must end with exactly one final outcome (`_final_key` of its result)."""
        bulk = {f"migration.bulk_accepted:{BULK_ID}", f"migration.bulk_finished:{BULK_ID}"} if self.bulk_requests else set()
        return set(self.transfers) | self.migrations | set(self.bulk_requests) | bulk


def _msg(type_: str, payload: dict[str, Any], occurred_at: str = "2026-11-02T10:00:00Z") -> bytes:
    return json.dumps({"message_id": str(uuid.uuid4()), "type": type_, "schema_version": 1,
                       "occurred_at": occurred_at, "source": "storm", "payload": payload}).encode()


def plan(transfers: int, migrations: int, seed: int = 7) -> Plan:
    rnd = random.Random(seed)
    p = Plan()
    customers = [f"sc{n}" for n in range(max(10, transfers // 40))]
    movers = [f"sm{n}" for n in range(migrations)]

    def add(key: str, value: bytes) -> None:
        p.messages.append((key.encode(), value))

    add("p1", _msg("catalog.product_defined", {"product_id": "p1", "name": "EPP", "supports_usage_based": True,
                                               "in_usage_bundle": True}))
    add("p2", _msg("catalog.product_defined", {"product_id": "p2", "name": "E5", "supports_usage_based": False,
                                               "in_usage_bundle": False}))
    for c in customers + movers:
        add(c, _msg("customer.registered", {"customer_id": c, "partner_id": "partner", "name": c, "channel": "direct",
                                            "distributor_id": None, "data_complete": True}))
    for c in customers:
        add(c, _msg("subscription.purchased", {
            "subscription_id": f"{c}-src", "customer_id": c, "product_id": "p2", "plan_id": "plan-a",
            "billing_model": "annual", "management": "partner_managed", "seats": SOURCE_SEATS, "term_months": 12,
            "start_date": "2026-01-05", "end_date": "2027-01-04", "subscription_key": f"K-{c}"},
            occurred_at="2026-01-05T09:00:00Z"))
        p.seats[c] = SOURCE_SEATS
    for i, c in enumerate(movers):  # half migrate (monthly), half are refused (annual, renewal window far away)
        monthly = i % 2 == 0
        add(c, _msg("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "p1", "plan_id": "plan-m",
            "billing_model": "monthly" if monthly else "annual", "management": "partner_managed", "seats": 5,
            "term_months": 1 if monthly else 12, "start_date": "2026-10-01",
            "end_date": "2026-10-31" if monthly else "2027-09-30", "subscription_key": f"K-{c}"},
            occurred_at="2026-10-01T09:00:00Z"))
    p.reference = len(p.messages)
    orders: list[tuple[str, list[bytes]]] = []
    for n in range(transfers):
        op, c = f"st-{n}", rnd.choice(customers)
        down = {"operation_id": op, "order_id": f"{op}-d", "customer_id": c, "subscription_id": f"{c}-src",
                "seats": 1, "requested_by": "storm"}
        up = {"operation_id": op, "order_id": f"{op}-u", "customer_id": c, "seats": 1, "requested_by": "storm",
              "target": {"kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": "p2",
                         "plan_id": "plan-b", "term_months": 12}}
        roll = rnd.random()
        if roll < 0.8:
            p.transfers[op] = "transfer.completed"
            halves = [down, up] if rnd.random() < 0.5 else [up, down]
            orders.append((c, [_msg(f"transfer.{'downgrade' if h is down else 'upgrade'}_ordered", h) for h in halves]))
        elif roll < 0.9:
            p.transfers[op] = "transfer.rejected"  # SEAT_COUNT_MISMATCH, final
            orders.append((c, [_msg("transfer.downgrade_ordered", down),
                               _msg("transfer.upgrade_ordered", {**up, "seats": 2})]))
        else:
            p.transfers[op] = "transfer.cancelled"  # cancelled while waiting; its other half is then refused
            orders.append((c, [_msg("transfer.downgrade_ordered", down),
                               _msg("transfer.cancel_requested", {"operation_id": op, "requested_by": "storm",
                                                                  "reason": "customer changed their mind"}),
                               _msg("transfer.upgrade_ordered", up)]))
    for c in movers:
        p.migrations.add(f"mig-{c}")
        orders.append((c, [_msg("migration.requested", {"request_id": f"mig-{c}", "customer_id": c,
                                                        "product_ids": ["p1"], "requested_by": "storm"})]))
    rnd.shuffle(orders)
    for key, values in orders:
        for value in values:
            add(key, value)
    _bulk(p, add, max(10, migrations // 2))
    return p



def _bulk(p: Plan, add: Any, customers: int) -> None:
    """A bulk migration published late in the flow (its customers' reference data is long
    applied), then a tick a day for 21 days: a third of its customers migrate at once, the rest
    on the day their window opens, each decided once however the processors die."""
    bulkers = [f"sb{n}" for n in range(customers)]
    p.bulk_customers = customers
    for n, c in enumerate(bulkers):
        opens = BULK_DAY + timedelta(days=n % 21 - 6)  # windows open from 6 days before to 14 days after
        add(c, _msg("customer.registered", {"customer_id": c, "partner_id": "storm-partner", "name": c,
                                            "channel": "direct", "distributor_id": None, "data_complete": True}))
        add(c, _msg("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "p1", "plan_id": "plan-m",
            "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
            "start_date": "2026-01-01", "end_date": (opens + timedelta(days=90)).isoformat(),
            "subscription_key": f"K-{c}"}, occurred_at="2026-01-01T09:00:00Z"))
        first = bulk_request_id(BULK_ID, c)
        if opens <= BULK_DAY:
            p.bulk_requests[first] = "migration.completed"
        else:
            p.bulk_requests[first] = "migration.rejected"
            p.bulk_requests[bulk_request_id(BULK_ID, c, opens)] = "migration.completed"
    # Registration and purchase go out with the reference data; the bulk and the ticks last.
    tail = p.messages[-2 * customers:]
    del p.messages[-2 * customers:]
    p.messages[p.reference:p.reference] = tail
    p.reference += len(tail)
    p.bulk_at = len(p.messages)
    add("storm-partner", _msg("migration.bulk_requested", {
        "bulk_id": BULK_ID, "partner_id": "storm-partner", "requested_by": "storm", "product_ids": ["p1"],
        "customer_ids": bulkers}, occurred_at=f"{BULK_DAY.isoformat()}T10:00:00Z"))
    for day in range(1, 22):
        add("storm-partner", _msg("clock.tick", {}, occurred_at=f"{(BULK_DAY + timedelta(days=day)).isoformat()}T00:00:00Z"))


class Processors:
    """N `coterm run` processes, each with a metrics port, restarted after every kill."""

    def __init__(self, count: int, env: dict[str, str], log_dir: str) -> None:
        self.env, self.log_dir = env, log_dir
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.starts = 0

    def start(self, slot: int) -> None:
        log = open(f"{self.log_dir}/run-{slot}.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[slot] = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--metrics-port", str(self.ports[slot])],
            env={**os.environ, **self.env}, stdout=log, stderr=log)
        self.starts += 1

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def leader(self) -> int | None:
        for slot, port in enumerate(self.ports):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    if re.search(r"^coterm_outbox_leader 1\.0$", r.read().decode(), re.M):
                        return slot
            except OSError:
                continue
        return None

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()


@dataclass
class Report:
    kills: int = 0
    leader_kills: int = 0
    transfers: int = 0
    migrations: int = 0
    bulk_customers: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0  # copies of a result with the same message_id (allowed, counted)
    contradictions: list[str] = field(default_factory=list)
    wrong_outcomes: list[str] = field(default_factory=list)
    vendor_accepted: int = 0
    vendor_requests: int = 0
    cut_short: int = 0
    vendor_problems: list[str] = field(default_factory=list)
    seat_problems: list[str] = field(default_factory=list)
    dead_letters: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.contradictions or self.wrong_outcomes or self.vendor_problems
                    or self.seat_problems or self.dead_letters)

    def table(self) -> str:
        rows = [("kills (of them at the outbox leader)", f"{self.kills} ({self.leader_kills})"),
                ("transfers / migrations / bulk customers", f"{self.transfers} / {self.migrations} / {self.bulk_customers}"),
                ("lost (no final outcome)", len(self.lost)), ("duplicate result copies (same message_id)", self.duplicates),
                ("contradictions", len(self.contradictions)), ("outcomes other than planned", len(self.wrong_outcomes)),
                ("vendor accepted calls / requests (of them cut short by a kill)",
                 f"{self.vendor_accepted} / {self.vendor_requests} ({self.cut_short})"),
                ("vendor problems (not one call, key or body changed)", len(self.vendor_problems)),
                ("seat conservation problems", len(self.seat_problems)), ("dead letters", self.dead_letters),
                ("wall time", f"{self.wall_s:.0f} s")]
        return "| figure | value |\n| --- | ---: |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def run_storm(transfers: int, migrations: int, kills: int, processes: int = 3, seed: int = 7,
              log_dir: str | None = None, say: Any = print, gap_s: tuple[float, float] = (2.0, 4.0),
              leader_every: int = 4) -> Report:
    import tempfile

    report = Report(transfers=transfers, migrations=migrations)
    rnd = random.Random(seed)
    schema = f"storm_{uuid.uuid4().hex[:10]}"
    store = f"{POSTGRES_URL}?schema={schema}"
    p = plan(transfers, migrations, seed)
    report.bulk_customers = p.bulk_customers
    tag = uuid.uuid4().hex[:8]
    topics = {"orders": f"storm-orders-{tag}", "results": f"storm-results-{tag}", "dead": f"storm-dead-{tag}"}
    started = time.monotonic()
    with BundledBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        vendor = VendorSimulator().start()
        try:
            ensure_topics(broker.bootstrap, list(topics.values()), partitions=PARTITIONS)
            open_store(store).close()  # tables made once, before several processes race for them
            env = {"COTERM_KAFKA_BOOTSTRAP": broker.bootstrap, "COTERM_STORE": store, "COTERM_VENDOR_URL": vendor.url,
                   "COTERM_TOPIC_ORDERS": topics["orders"], "COTERM_TOPIC_RESULTS": topics["results"],
                   "COTERM_TOPIC_DEADLETTER": topics["dead"], "COTERM_GROUP_ID": f"storm-{tag}"}
            fleet = Processors(processes, env, log_dir or tmp)
            for slot in range(processes):
                fleet.start(slot)
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=20)
            for key, value in p.messages[: p.reference]:
                producer.send(topics["orders"], key=key, value=value)
            producer.flush()
            # Orders flow over the first two thirds of the storm, in small bursts.
            flowing = threading.Thread(target=_publish_orders, args=(producer, topics["orders"], p, store,
                                                                     kills * sum(gap_s) / 2 * 2 / 3), daemon=True)
            flowing.start()
            for k in range(kills):
                time.sleep(rnd.uniform(*gap_s))
                slot = fleet.leader() if k % leader_every == leader_every - 1 else None
                aimed = slot is not None
                if aimed:
                    report.leader_kills += 1
                else:
                    slot = rnd.randrange(processes)
                assert slot is not None
                fleet.kill(slot)
                report.kills += 1
                fleet.start(slot)
                say(f"storm: kill {k + 1}/{kills}: processor {slot}{' (the outbox leader)' if aimed else ''}")
            flowing.join()
            producer.close()
            say("storm: kills done; waiting for every outcome")
            results = _wait_for_outcomes(broker.bootstrap, topics["results"], p, timeout_s=300 + transfers / 10)
            time.sleep(2)  # a last vendor retry in flight would show below
            fleet.stop()
            results = [json.loads(r.value) for r in read_topic(broker.bootstrap, topics["results"], timeout_s=30)]
            letters = read_topic(broker.bootstrap, topics["dead"], timeout_s=10)
            _check(report, p, results, letters, vendor, store)
        finally:
            vendor.stop()
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    report.wall_s = time.monotonic() - started
    return report


def _publish_orders(producer: KafkaProducer, topic: str, p: Plan, store: str, over_s: float) -> None:
    """The orders in bursts; then, once the bulk's customers are in the store, the bulk and its
    ticks. They are keyed by partner, the customers by customer: on other partitions, nothing
    orders them (CONTRACT.md section 5), and a processor killed mid-way holds its partitions
    back for a rebalance while the others go on."""
    _publish(producer, topic, p.messages[p.reference:p.bulk_at], over_s)
    if p.bulk_at == len(p.messages):
        return
    from aggregates.subscription import Subscription

    wanted = [Subscription.create_id(f"sb{n}-s") for n in range(p.bulk_customers)]
    app = open_store(store)
    try:
        while len(app.recorder.existing(wanted)) < len(wanted):  # type: ignore[attr-defined]
            time.sleep(0.5)
    finally:
        app.close()
    _publish(producer, topic, p.messages[p.bulk_at:], 1.0)


def _publish(producer: KafkaProducer, topic: str, messages: list[tuple[bytes, bytes]], over_s: float) -> None:
    bursts = max(1, int(over_s / 0.5))
    size = max(1, len(messages) // bursts + 1)
    for i in range(0, len(messages), size):
        for key, value in messages[i : i + size]:
            producer.send(topic, key=key, value=value)
        producer.flush()
        time.sleep(0.5)


def _final_key(r: dict[str, Any]) -> str | None:
    """What a result is the final outcome of (planned keys, `Plan.outcome_keys`), or None."""
    t, payload = r["type"], r["payload"]
    if t in FINAL_TRANSFER or (t == "transfer.rejected" and payload.get("final")):
        return str(payload["operation_id"])
    if t in ("migration.completed", "migration.rejected"):
        return str(payload["request_id"])
    if t.startswith("migration.bulk_"):
        return f"{t}:{payload['bulk_id']}"
    return None


def _wait_for_outcomes(bootstrap: str, topic: str, p: Plan, timeout_s: float) -> list[dict[str, Any]]:
    wanted = p.outcome_keys()
    deadline = time.monotonic() + timeout_s
    while True:
        results = [json.loads(r.value) for r in read_topic(bootstrap, topic, timeout_s=30)]
        if wanted <= {_final_key(r) for r in results} or time.monotonic() > deadline:
            return results
        time.sleep(2)


def _check(report: Report, p: Plan, results: list[dict[str, Any]], letters: list[Any], vendor: VendorSimulator,
           store: str) -> None:
    by_id: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["message_id"] in by_id:
            report.duplicates += 1
            if by_id[r["message_id"]] != r:
                report.contradictions.append(f"result {r['message_id']} published twice with different content")
        by_id[r["message_id"]] = r
    finals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in by_id.values():
        if (key := _final_key(r)) is not None:
            finals[key].append(r)
    for key in sorted(p.outcome_keys()):
        got = finals.get(key, [])
        if not got:
            report.lost.append(key)
        elif len(got) > 1:
            report.contradictions.append(f"{key}: {len(got)} final outcomes ({', '.join(r['type'] for r in got)})")
        elif key in p.transfers and got[0]["type"] != p.transfers[key]:
            report.wrong_outcomes.append(f"{key}: {got[0]['type']} {got[0]['payload'].get('reason_code')}, "
                                         f"planned {p.transfers[key]}")
        elif key in p.bulk_requests and got[0]["type"] != p.bulk_requests[key]:
            report.wrong_outcomes.append(f"bulk request {key}: {got[0]['type']}, planned {p.bulk_requests[key]}")
    finished = finals.get(f"migration.bulk_finished:{BULK_ID}", [])
    planned = {"migrated": p.bulk_customers, "rejected": 0, "cancelled": 0}
    if p.bulk_requests and finished and finished[0]["payload"]["counts"] != planned:
        report.wrong_outcomes.append(f"bulk counts {finished[0]['payload']['counts']}, planned {planned}")
    completed = {k for k, rs in finals.items() if rs and rs[0]["type"] == "transfer.completed"}
    bodies: dict[str, set[str]] = defaultdict(set)
    for request in vendor.state.requests:
        if request.get("complete", True):
            bodies[request["key"]].add(request["body"])
        else:  # a sender SIGKILLed mid-request: the vendor got part of a body and answered nobody
            report.cut_short += 1
    report.vendor_requests = len(vendor.state.requests)
    report.vendor_accepted = len(vendor.state.accepted)
    if set(vendor.state.accepted) != completed:
        report.vendor_problems.append(f"accepted calls for {len(vendor.state.accepted)} keys, "
                                      f"{len(completed)} transfers completed")
    for key, b in bodies.items():
        if len(b) > 1:
            docs = [json.loads(x) for x in sorted(b)]
            differs = {k: [d.get(k) for d in docs] for k in sorted(set().union(*docs)) if len({json.dumps(d.get(k)) for d in docs}) > 1}
            report.vendor_problems.append(f"{key}: {len(b)} different bodies, differing in {differs}")
    report.dead_letters = len(letters)
    _check_seats(report, p, store)


def _check_seats(report: Report, p: Plan, store: str) -> None:
    from aggregates.customer import Customer
    from aggregates.subscription import Subscription

    app = open_store(store)
    try:
        for c, before in p.seats.items():
            customer = app.repository.get(Customer.create_id(c))
            total = sum(app.repository.get(Subscription.create_id(s)).seats for s in customer.subscription_ids)
            if total != before:
                report.seat_problems.append(f"{c}: {total} seats, {before} before")
    finally:
        app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--migrations", type=int, default=300)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", metavar="DIR", help="keep each processor's log here")
    parser.add_argument("--gap", type=float, nargs=2, default=(2.0, 4.0), metavar=("MIN_S", "MAX_S"),
                        help="seconds between kills, drawn between the two (default 2 4)")
    parser.add_argument("--leader-every", type=int, default=4, metavar="N",
                        help="every N-th kill aims at the outbox leader (1: every kill)")
    args = parser.parse_args()
    if args.logs:
        os.makedirs(args.logs, exist_ok=True)
    report = run_storm(args.transfers, args.migrations, args.kills, args.processes, args.seed, args.logs,
                       gap_s=tuple(args.gap), leader_every=max(1, args.leader_every))  # type: ignore[arg-type]
    print(report.table())
    for problem in (report.lost[:10] + report.contradictions[:10] + report.wrong_outcomes[:10]
                    + report.vendor_problems[:10] + report.seat_problems[:10]):
        print("problem:", problem)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
