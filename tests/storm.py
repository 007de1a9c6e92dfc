"""Kill storm: several `coterm run` processes in one group on PostgreSQL, SIGKILLed at random,
paused (SIGSTOP, the outbox leader among them) and cut off from their database, while a stream
of transfers, migrations and a bulk migration (with a tick a day for 21 days) flows, then every
guarantee checked.

The stream is sent the way the world sends it: each transfer's two halves on different
partitions (as when two upstream systems publish them), upgrade first half of the time, some
orphans that must expire once, many transfers at once from one source and into one existing
target, and a vendor that answers slowly, so calls pile up behind one subscription.

  python -m tests.storm [--transfers 2000] [--migrations 300] [--kills 50] [--pauses 4] [--outage 20]   (make storm)

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
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from kafka import KafkaAdminClient, KafkaProducer

from aggregates.bulk import bulk_request_id
from processor.dev.broker import ON_BUNDLED_BROKER_ENV, free_port
from processor.dev.kafka_cluster import KafkaCluster
from processor.dev.vendor_sim import VendorSimulator
from processor.kafka_io import ensure_topics, read_topic
from processor.outbox.topic_ends import store_positions
from processor.store.opening import open_store
from tests.backend import postgres_url

PARTITIONS = 6
SOURCE_SEATS = 1000
FINAL_TRANSFER = {"transfer.completed", "transfer.failed", "transfer.cancelled"}
BULK_ID, BULK_DAY = "storm-bulk", date(2026, 11, 2)


@dataclass
class Plan:
    """What was published and what each operation must end as."""

    messages: list[tuple[bytes, bytes, int | None]] = field(default_factory=list)  # (key, value, partition)
    reference: int = 0
    transfers: dict[str, str] = field(default_factory=dict)  # operation_id -> expected final result type
    orphans: set[str] = field(default_factory=set)  # one half only: must expire, once, PAIRING_TIMEOUT
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

    def add(key: str, value: bytes, partition: int | None = None) -> None:
        p.messages.append((key.encode(), value, partition))

    add("p1", _msg("catalog.product_defined", {"product_id": "p1", "name": "EPP", "supports_usage_based": True,
                                               "in_usage_bundle": True}))
    add("p2", _msg("catalog.product_defined", {"product_id": "p2", "name": "E5", "supports_usage_based": False,
                                               "in_usage_bundle": False}))
    add("p3", _msg("catalog.product_defined", {"product_id": "p3", "name": "EDR", "supports_usage_based": True,
                                               "in_usage_bundle": True}))
    for c in customers + movers:
        add(c, _msg("customer.registered", {"customer_id": c, "partner_id": "partner", "name": c, "channel": "direct",
                                            "distributor_id": None, "data_complete": True}))
    for c in customers:
        add(c, _msg("subscription.purchased", {
            "subscription_id": f"{c}-src", "customer_id": c, "product_id": "p2", "plan_id": "plan-a",
            "billing_model": "annual", "management": "partner_managed", "seats": SOURCE_SEATS, "term_months": 12,
            "start_date": "2026-01-05", "end_date": "2027-01-04", "subscription_key": f"K-{c}"},
            occurred_at="2026-01-05T09:00:00Z"))
        add(c, _msg("subscription.purchased", {  # the existing target several transfers at once go into
            "subscription_id": f"{c}-tgt", "customer_id": c, "product_id": "p2", "plan_id": "plan-b",
            "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
            "start_date": "2026-01-05", "end_date": "2027-01-04", "subscription_key": f"KT-{c}"},
            occurred_at="2026-01-05T09:00:00Z"))
        p.seats[c] = SOURCE_SEATS + 5
    for i, c in enumerate(movers):  # half migrate (monthly), half are refused (annual, renewal window far away)
        monthly = i % 2 == 0
        add(c, _msg("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "p1", "plan_id": "plan-m",
            "billing_model": "monthly" if monthly else "annual", "management": "partner_managed", "seats": 5,
            "term_months": 1 if monthly else 12, "start_date": "2026-10-01",
            "end_date": "2026-10-31" if monthly else "2027-09-30", "subscription_key": f"K-{c}"},
            occurred_at="2026-10-01T09:00:00Z"))
    p.reference = len(p.messages)
    orders: list[list[tuple[str, bytes, int | None]]] = []

    def apart(c: str, op: str, first: bytes, second: bytes) -> list[tuple[str, bytes, int | None]]:
        """Two halves on two different partitions, under different keys (two upstream systems)."""
        one = rnd.randrange(PARTITIONS)
        return [(c, first, one), (f"{op}-upstream-b", second, (one + rnd.randrange(1, PARTITIONS)) % PARTITIONS)]

    for n in range(transfers):
        op, c = f"st-{n}", rnd.choice(customers)
        down = {"operation_id": op, "order_id": f"{op}-d", "customer_id": c, "subscription_id": f"{c}-src",
                "seats": 1, "requested_by": "storm"}
        target = ({"kind": "existing_subscription", "subscription_id": f"{c}-tgt"} if rnd.random() < 0.3 else
                  {"kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": "p2",
                   "plan_id": "plan-b", "term_months": 12})
        up = {"operation_id": op, "order_id": f"{op}-u", "customer_id": c, "seats": 1, "requested_by": "storm",
              "target": target}
        down_msg, up_msg = _msg("transfer.downgrade_ordered", down), _msg("transfer.upgrade_ordered", up)
        roll = rnd.random()
        if roll < 0.77:
            p.transfers[op] = "transfer.completed"
            orders.append(apart(c, op, down_msg, up_msg) if rnd.random() < 0.5 else apart(c, op, up_msg, down_msg))
        elif roll < 0.80:
            p.transfers[op] = "transfer.failed"  # an orphan: PAIRING_TIMEOUT, once
            p.orphans.add(op)
            orders.append([(c, down_msg if rnd.random() < 0.5 else up_msg, None)])
        elif roll < 0.9:
            p.transfers[op] = "transfer.rejected"  # SEAT_COUNT_MISMATCH, final, whatever the order
            orders.append(apart(c, op, down_msg, _msg("transfer.upgrade_ordered", {**up, "seats": 2})))
        else:
            # Cancelled while waiting, its other half then refused: an order only one partition keeps.
            p.transfers[op] = "transfer.cancelled"
            orders.append([(c, down_msg, None),
                           (c, _msg("transfer.cancel_requested", {"operation_id": op, "requested_by": "storm",
                                                                 "reason": "customer changed their mind"}), None),
                           (c, up_msg, None)])
    for c in movers:
        p.migrations.add(f"mig-{c}")
        orders.append([(c, _msg("migration.requested", {"request_id": f"mig-{c}", "customer_id": c,
                                                        "product_ids": ["p1"], "requested_by": "storm"}), None)])
    rnd.shuffle(orders)
    for values in orders:
        for key, value, partition in values:
            add(key, value, partition)
    _bulk(p, add, max(10, migrations // 2))
    return p



def _bulk(p: Plan, add: Any, customers: int) -> None:
    """A bulk migration of two bundle products published late in the flow (its customers'
    reference data is long applied), then a tick a day for 21 days. Each customer holds p1,
    whose window opens from 6 days before the bulk to 14 after, and p3, whose window opens 3
    days after p1's: some migrate both at once, some p1 at once and p3 on its day, some
    neither at first, so the bundle is first made by a scheduled decision and p3 must join it
    later with its own key (contract 1.2: never a new key for a requested product)."""
    bulkers = [f"sb{n}" for n in range(customers)]
    p.bulk_customers = customers
    for n, c in enumerate(bulkers):
        opens = BULK_DAY + timedelta(days=n % 21 - 6)
        opens3 = opens + timedelta(days=3)
        add(c, _msg("customer.registered", {"customer_id": c, "partner_id": "storm-partner", "name": c,
                                            "channel": "direct", "distributor_id": None, "data_complete": True}))
        for product, window, key in (("p1", opens, f"K-{c}"), ("p3", opens3, f"K3-{c}")):
            add(c, _msg("subscription.purchased", {
                "subscription_id": f"{c}-{product}", "customer_id": c, "product_id": product, "plan_id": "plan-m",
                "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
                "start_date": "2026-01-01", "end_date": (window + timedelta(days=90)).isoformat(),
                "subscription_key": key}, occurred_at="2026-01-01T09:00:00Z"))
        first = bulk_request_id(BULK_ID, c)
        p.bulk_requests[first] = "migration.completed" if opens <= BULK_DAY else "migration.rejected"
        for window in (opens, opens3):
            if window > BULK_DAY:
                p.bulk_requests[bulk_request_id(BULK_ID, c, window)] = "migration.completed"
    # Registration and purchases go out with the reference data; the bulk and the ticks last.
    tail = p.messages[-3 * customers:]
    del p.messages[-3 * customers:]
    p.messages[p.reference:p.reference] = tail
    p.reference += len(tail)
    p.bulk_at = len(p.messages)
    add("storm-partner", _msg("migration.bulk_requested", {
        "bulk_id": BULK_ID, "partner_id": "storm-partner", "requested_by": "storm", "product_ids": ["p1", "p3"],
        "customer_ids": bulkers}, occurred_at=f"{BULK_DAY.isoformat()}T10:00:00Z"))
    for day in range(1, 22):
        add("storm-partner", _msg("clock.tick", {}, occurred_at=f"{(BULK_DAY + timedelta(days=day)).isoformat()}T00:00:00Z"))


class Processors:
    """N `coterm run` processes, each with a metrics port, restarted after every kill."""

    def __init__(self, count: int, env: dict[str, str], log_dir: str) -> None:
        self.env, self.log_dir = env, log_dir
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.paused: set[int] = set()
        self.starts = 0

    def start(self, slot: int) -> None:
        log = open(f"{self.log_dir}/run-{slot}.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[slot] = subprocess.Popen(
            [sys.executable, "-m", "processor.cli.coterm", "run", "--metrics-port", str(self.ports[slot])],
            env={**os.environ, **self.env}, stdout=log, stderr=log)
        self.starts += 1

    def pid(self, slot: int) -> int:
        proc = self.procs[slot]
        assert proc is not None
        return proc.pid

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def signal_tree(self, slot: int, sig: int) -> None:
        """SIGSTOP/SIGCONT a processor and its outbox process, as a frozen VM would stop both."""
        pid = self.pid(slot)
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for target in [pid, *map(int, children)]:
            try:
                os.kill(target, sig)
            except ProcessLookupError:
                pass
        (self.paused.add if sig == signal.SIGSTOP else self.paused.discard)(slot)

    def metrics(self, slot: int, timeout_s: float = 0.5) -> str | None:
        if slot in self.paused:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[slot]}/metrics", timeout=timeout_s) as r:
                return r.read().decode()
        except OSError:
            return None

    def leader(self, exclude: set[int] = frozenset()) -> int | None:  # type: ignore[assignment]
        for slot in range(len(self.ports)):
            text = None if slot in exclude else self.metrics(slot, timeout_s=2)
            if text and re.search(r"^coterm_outbox_leader 1\.0$", text, re.M):
                return slot
        return None

    def all_held(self, partitions: int) -> bool:
        """Every live processor answers and together they hold every orders partition (each one's
        `coterm_orders_partitions_held`, set on its latest assignment). A partition's lag metric
        would not do: it is absent until the partition is fetched from, and one the bulk barrier
        pauses is not fetched from at all."""
        held = 0
        for slot in range(len(self.ports)):
            text = self.metrics(slot)
            found = text and re.search(r"^coterm_orders_partitions_held ([0-9.]+)$", text, re.M)
            if not found:
                return False
            held += int(float(found.group(1)))
        return held == partitions

    def stop(self) -> None:
        for slot in list(self.paused):
            self.signal_tree(slot, signal.SIGCONT)
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
    pauses: int = 0
    leader_pauses: int = 0
    outage_s: float = 0.0
    transfers: int = 0
    migrations: int = 0
    bulk_customers: int = 0
    orphans: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0  # copies of a result with the same message_id (allowed, counted)
    contradictions: list[str] = field(default_factory=list)
    wrong_outcomes: list[str] = field(default_factory=list)
    false_expiries: list[str] = field(default_factory=list)  # PAIRING_TIMEOUT for an operation with both halves
    vendor_accepted: int = 0
    vendor_requests: int = 0
    cut_short: int = 0
    vendor_problems: list[str] = field(default_factory=list)
    chain_problems: list[str] = field(default_factory=list)  # a seats_before that is not the last seats_after
    overlaps: list[str] = field(default_factory=list)  # two calls on one subscription at once
    fencing_problems: list[str] = field(default_factory=list)  # a resumed former leader that sent a new call
    seat_problems: list[str] = field(default_factory=list)
    dead_letters: int = 0
    broker_kills: list[str] = field(default_factory=list)  # "node 2 (led 3 of 6 partitions)", "node 1 (the controller)"
    broker_stall_s: list[float] = field(default_factory=list)  # broker killed -> every orders partition applied further
    recover_s: list[float] = field(default_factory=list)  # kill -> every partition held again
    takeover_s: list[float] = field(default_factory=list)  # leader paused -> another leads
    calls_during_leader_pause: list[int] = field(default_factory=list)  # vendor requests while the leader was stopped
    throttled: int = 0  # vendor answers 429 (a throttled storm)
    most_open_before_throttle: int = 0  # the most calls the vendor had open at once before its first 429
    open_throttled: list[int] = field(default_factory=list)  # calls open at each attempt from a second after it on
    drain_s: float = 0.0  # last order published -> last outcome
    storm_s: float = 0.0  # first order published -> every outcome
    flow_s: float = 0.0  # orders were published over two thirds of this
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.contradictions or self.wrong_outcomes or self.vendor_problems
                    or self.seat_problems or self.dead_letters or self.false_expiries or self.chain_problems
                    or self.overlaps or self.fencing_problems)

    @property
    def completed_per_s(self) -> float:
        return self.vendor_accepted / self.storm_s if self.storm_s else 0.0

    def table(self) -> str:
        def spread(values: list[float]) -> str:
            if not values:
                return "-"
            ordered = sorted(values)
            return f"{ordered[len(ordered) // 2]:.1f} / {ordered[-1]:.1f} s"

        rows = [("kills (of them at the outbox leader)", f"{self.kills} ({self.leader_kills})"),
                ("pauses past session and pairing timeout (of them the leader)", f"{self.pauses} ({self.leader_pauses})"),
                ("database outage", f"{self.outage_s:g} s"),
                ("brokers SIGKILLed and restarted", "; ".join(self.broker_kills) or "-"),
                ("broker killed -> every orders partition applied further (each)",
                 ", ".join(f"{x:.1f} s" for x in self.broker_stall_s) or "-"),
                ("transfers (orphans) / migrations / bulk customers",
                 f"{self.transfers} ({self.orphans}) / {self.migrations} / {self.bulk_customers}"),
                ("lost (no final outcome)", len(self.lost)), ("duplicate result copies (same message_id)", self.duplicates),
                ("contradictions", len(self.contradictions)), ("outcomes other than planned", len(self.wrong_outcomes)),
                ("halves expired while their partner was waiting", len(self.false_expiries)),
                ("vendor accepted calls / requests (of them cut short by a kill)",
                 f"{self.vendor_accepted} / {self.vendor_requests} ({self.cut_short})"),
                ("vendor problems (not one call, key or body changed)", len(self.vendor_problems)),
                ("broken seat chains", len(self.chain_problems)), ("overlapping calls on one subscription", len(self.overlaps)),
                ("new calls from a former leader after its lease was lost", len(self.fencing_problems)),
                ("seat conservation problems", len(self.seat_problems)), ("dead letters", self.dead_letters),
                ("kill -> all partitions held again (p50 / max)", spread(self.recover_s)),
                ("leader paused -> another leads (p50 / max)", spread(self.takeover_s)),
                ("vendor requests while the leader was paused", ", ".join(map(str, self.calls_during_leader_pause)) or "-"),
                ("vendor 429s; calls open at once: most before the first, p50 / p90 / max after it",
                 f"{self.throttled}; {self.most_open_before_throttle}, {_quantiles(self.open_throttled)}"
                 if self.throttled else "-"),
                ("last order published -> last outcome (drain)", f"{self.drain_s:.1f} s"),
                ("completed transfers/s, first order to last outcome", f"{self.completed_per_s:.1f}"),
                ("wall time", f"{self.wall_s:.0f} s")]
        return "| figure | value |\n| --- | ---: |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _quantiles(values: list[int]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return " / ".join(str(ordered[min(len(ordered) - 1, int(q * len(ordered)))]) for q in (0.5, 0.9, 1.0))


def _throttling(report: Report, requests: list[dict[str, Any]]) -> None:
    """The vendor's 429s, how many calls it had open at once before and while it throttled, and
    any attempt that came before the `Retry-After` its call's last answer gave (a problem)."""
    throttled = [r["at"] for r in requests if r.get("status") == 429]
    report.throttled = len(throttled)
    if throttled:
        report.most_open_before_throttle = max((r.get("open", 0) for r in requests if r["at"] < throttled[0]), default=0)
        report.open_throttled = [r.get("open", 0) for r in requests if r["at"] >= throttled[0] + 1]
    last: dict[str, dict[str, Any]] = {}
    for request in requests:
        before = last.get(request["key"])
        if before is not None and before.get("retry_after") is not None and \
                request["at"] - before["at"] < float(before["retry_after"]):
            report.vendor_problems.append(f"{request['key']}: sent {request['at'] - before['at']:.2f} s after a "
                                          f"Retry-After of {before['retry_after']}")
        last[request["key"]] = request


@dataclass
class Pause:
    slot: int
    pid: int
    leader: bool
    stopped_at: float
    resumed_at: float = 0.0
    takeover_s: float | None = None


def run_storm(transfers: int, migrations: int, kills: int, processes: int = 3, seed: int = 7,
              log_dir: str | None = None, say: Any = print, gap_s: tuple[float, float] = (2.0, 4.0),
              leader_every: int = 4, pauses: int = 2, pause_s: float = 10.0, outage_s: float = 0.0,
              pairing_timeout_s: float = 8.0, vendor_delay_s: float = 0.05, flow_s: float | None = None,
              bootstrap: str | None = None, brokers: int = 1, broker_kills: int = 0, bundled: bool = False,
              throttle_share: float = 0.0) -> Report:
    """Faults, in order, one every `gap_s`: kills and `pauses` (SIGSTOP for `pause_s`, longer than
    the session timeout of 6 s and the pairing timeout; every other one at the outbox leader)
    spread among them, `broker_kills` (SIGKILL of the broker leading the most orders partitions,
    the last one of the active controller, each restarted after 3 s) while orders flow, and a
    database outage of `outage_s` half way through. On the Kafka at `bootstrap`, or on an Apache
    Kafka cluster of `brokers` nodes started here (broker kills need one of 3); `bundled`: the
    broker at `bootstrap` is the bundled Tansu one (coterm runs with what it sets on it);
    `throttle_share`: the vendor answers 429 with a `Retry-After` of 1-3 s to that share of attempts."""
    import contextlib
    import tempfile

    from processor.dev.vendor_sim import Faults
    from tests.tcp_proxy import TcpProxy

    report = Report(transfers=transfers, migrations=migrations, outage_s=outage_s)
    rnd = random.Random(seed)
    schema = f"storm_{uuid.uuid4().hex[:10]}"
    if broker_kills and (bootstrap or brokers < 3):
        raise ValueError("broker kills need a cluster of 3 brokers started by the storm")
    store = f"{postgres_url()}?schema={schema}"
    p = plan(transfers, migrations, seed)
    report.bulk_customers, report.orphans = p.bulk_customers, len(p.orphans)
    tag = uuid.uuid4().hex[:8]
    topics = {"orders": f"storm-orders-{tag}", "results": f"storm-results-{tag}", "dead": f"storm-dead-{tag}"}
    started = time.monotonic()
    url = urllib.parse.urlsplit(postgres_url())
    proxy = TcpProxy((url.hostname or "127.0.0.1", url.port or 5432))
    proxied = postgres_url().replace(url.netloc, f"{url.username or 'postgres'}@127.0.0.1:{proxy.port}") + f"?schema={schema}"
    faults = ["kill"] * kills + ["pause"] * max(0, pauses - 1)
    rnd.shuffle(faults)
    if pauses:  # the first fault pauses the leader while orders flow: calls must go on without it
        faults.insert(0, "pause")
    for i in range(broker_kills):  # while orders flow (their first two thirds), the last one at the controller
        faults.insert((i + 1) * len(faults) // (2 * broker_kills + 1), "controller" if i == broker_kills - 1 else "broker")
    outage_at = len(faults) // 2 if outage_s else -1
    pauses_done: list[Pause] = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        cluster = None if bootstrap else stack.enter_context(KafkaCluster(brokers=brokers))
        bootstrap = bootstrap or cluster.bootstrap  # type: ignore[union-attr]
        if cluster is not None:
            say(f"storm: Apache Kafka {cluster.version}, {brokers} broker(s), started in {cluster.started_in_s:.1f} s")
        vendor = VendorSimulator(faults=Faults(delay_s=vendor_delay_s, throttle_share=throttle_share,
                                               retry_after_s=[1, 3])).start()
        try:
            ensure_topics(bootstrap, list(topics.values()), partitions=PARTITIONS)
            open_store(store).close()  # tables made once, before several processes race for them
            env = {"COTERM_KAFKA_BOOTSTRAP": bootstrap, "COTERM_STORE": proxied, "COTERM_VENDOR_URL": vendor.url,
                   "COTERM_TOPIC_ORDERS": topics["orders"], "COTERM_TOPIC_RESULTS": topics["results"],
                   "COTERM_TOPIC_DEADLETTER": topics["dead"], "COTERM_GROUP_ID": f"storm-{tag}",
                   "COTERM_PAIRING_TIMEOUT_S": str(pairing_timeout_s),
                   # The broker's least (group.min.session.timeout.ms): a paused processor's
                   # partitions move after it; a killed one restarted sooner takes them back.
                   "COTERM_KAFKA_SESSION_TIMEOUT_MS": "6000",
                   **(ON_BUNDLED_BROKER_ENV if bundled else {})}
            fleet = Processors(processes, env, log_dir or tmp)
            for slot in range(processes):
                fleet.start(slot)
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
            for key, value, partition in p.messages[: p.reference]:
                producer.send(topics["orders"], key=key, value=value, partition=partition)
            producer.flush()
            # Reference data first, as upstream does: a half on another partition than its
            # customer's purchases could otherwise be decided before the subscription is known.
            _wait_for_subscriptions(store, [f"{c}-{kind}" for c in p.seats for kind in ("src", "tgt")])
            flowing_since = time.monotonic()
            watcher = open_store(store)  # the store directly, not through the proxy the outage cuts
            stack.callback(watcher.close)

            def positions() -> dict[int, int]:
                return store_positions(watcher.process_recorder, topics["orders"], list(range(PARTITIONS)))

            # Orders flow over the first two thirds of the storm, in small bursts.
            span = flow_s or len(faults) * sum(gap_s) / 2 + pauses * pause_s + outage_s
            report.flow_s = span
            flowing = threading.Thread(target=_publish_orders, args=(producer, topics["orders"], p, store,
                                                                     span * 2 / 3), daemon=True)
            flowing.start()
            # The faults begin once an outbox leads: the first pause is meant for the leader.
            _until(lambda: fleet.leader() is not None, time.monotonic(), 60)
            leader_pauses = 0
            for k, fault in enumerate(faults):
                time.sleep(rnd.uniform(*gap_s))
                if k == outage_at:
                    say(f"storm: the database stops answering for {outage_s:g} s")
                    proxy.cut()
                    time.sleep(outage_s)
                    proxy.restore()
                if fault in ("broker", "controller"):
                    label, stall = _kill_broker(cluster, topics["orders"], fault, positions)  # type: ignore[arg-type]
                    report.broker_kills.append(label)
                    report.broker_stall_s.append(stall)
                    say(f"storm: broker kill {len(report.broker_kills)}/{broker_kills}: {label}; "
                        f"every orders partition applied further after {stall:.1f} s")
                    continue
                if fault == "kill":
                    slot = fleet.leader() if report.kills % leader_every == leader_every - 1 else None
                    aimed = slot is not None
                    report.leader_kills += aimed
                    slot = slot if slot is not None else rnd.randrange(processes)
                    fleet.kill(slot)
                    killed_at = time.monotonic()
                    report.kills += 1
                    fleet.start(slot)
                    say(f"storm: kill {report.kills}/{kills}: processor {slot}{' (the outbox leader)' if aimed else ''}")
                    report.recover_s.append(_until(lambda: fleet.all_held(PARTITIONS), killed_at, 60))
                else:
                    slot = fleet.leader() if leader_pauses % 2 == 0 else None
                    aimed = slot is not None
                    leader_pauses += aimed
                    slot = slot if slot is not None else rnd.randrange(processes)
                    pause = Pause(slot, fleet.pid(slot), aimed, time.time())
                    fleet.signal_tree(slot, signal.SIGSTOP)
                    stopped = time.monotonic()
                    say(f"storm: pause {len(pauses_done) + 1}/{pauses}: processor {slot}"
                        f"{' (the outbox leader)' if aimed else ''} for {pause_s:g} s")
                    if aimed:
                        pause.takeover_s = _until(lambda s=slot: fleet.leader(exclude={s}) is not None, stopped, pause_s)
                        report.takeover_s.append(pause.takeover_s)
                    time.sleep(max(0.0, pause_s - (time.monotonic() - stopped)))
                    fleet.signal_tree(slot, signal.SIGCONT)
                    pause.resumed_at = time.time()
                    pauses_done.append(pause)
                    report.pauses += 1
            report.leader_pauses = sum(x.leader for x in pauses_done)
            flowing.join()
            producer.close()
            published_all = time.monotonic()
            say("storm: faults done; waiting for every outcome")
            results = _wait_for_outcomes(bootstrap, topics["results"], p, timeout_s=300 + transfers / 10)
            report.storm_s = time.monotonic() - flowing_since
            report.drain_s = time.monotonic() - published_all
            time.sleep(2)  # a last vendor retry in flight would show below
            fleet.stop()
            results = [json.loads(r.value) for r in read_topic(bootstrap, topics["results"], timeout_s=30)]
            letters = read_topic(bootstrap, topics["dead"], timeout_s=10)
            _check(report, p, results, letters, vendor, store)
            _check_pauses(report, pauses_done, vendor, fleet.log_dir)
        finally:
            vendor.stop()
            proxy.stop()
            with psycopg.connect(postgres_url(), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    report.wall_s = time.monotonic() - started
    return report


def _kill_broker(cluster: KafkaCluster, topic: str, which: str, positions: Any) -> tuple[str, float]:
    """SIGKILL the broker leading the most partitions of `topic` (`which` "broker") or the active
    controller ("controller"); restart it once 3 s have passed and the store has applied every
    partition further than at the kill (how long that took is returned), then wait for it."""
    from collections import Counter

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10_000)
    try:
        if which == "controller":
            node = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]["leader_id"]
            label = f"node {node} (the active controller)"
        else:
            led = Counter(p["leader_id"] for p in admin.describe_topics([topic])[0]["partitions"])
            node, count = led.most_common(1)[0]
            label = f"node {node} (leading {count} of {sum(led.values())} orders partitions)"
    finally:
        admin.close()
    before = positions()
    cluster.kill(node)
    killed = time.monotonic()
    stall = _until(lambda: all(now > before[p] for p, now in positions().items()), killed, 60)
    time.sleep(max(0.0, 3.0 - (time.monotonic() - killed)))
    cluster.restart(node)
    cluster.wait_ready(60)
    return label, stall


def _lease_won_at(log_path: str) -> list[float]:
    """When the processes of one slot acquired the leadership lease (their log lines)."""
    won = []
    try:
        lines = open(log_path, encoding="utf-8", errors="replace").read().splitlines()  # noqa: SIM115
    except OSError:
        return won
    for line in lines:
        if '"leadership.acquired"' in line:
            try:
                stamp = json.loads(line)["timestamp"]
            except (ValueError, KeyError):
                continue
            won.append(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return won


def _until(condition: Any, since: float, timeout_s: float) -> float:
    """Seconds from `since` until `condition()` holds (checked every 0.2 s), or `timeout_s`."""
    while time.monotonic() - since < timeout_s:
        if condition():
            break
        time.sleep(0.2)
    return round(time.monotonic() - since, 1)


def _check_pauses(report: Report, pauses: list[Pause], vendor: VendorSimulator, log_dir: str) -> None:
    """While a leader was stopped, calls went on from another; once resumed, it sent no new call
    until it had won the lease again (a new epoch: e.g. when the others were being killed and
    restarted, the lease it lost may well be free again as it wakes)."""
    requests = list(vendor.state.requests)
    for pause in pauses:
        sender = f"coterm-run/{pause.pid}"
        if pause.leader:
            # From when another took the lead (the calls the paused one had out are sent again
            # first: the vendor answers 409, the next ones on their subscriptions follow).
            took_over = pause.stopped_at + (pause.takeover_s or 0.0)
            report.calls_during_leader_pause.append(
                sum(1 for r in requests if took_over - 0.5 <= r["at"] <= pause.resumed_at and r["sender"] != sender))
        if not pause.leader:
            continue
        won_again = min((t for t in _lease_won_at(f"{log_dir}/run-{pause.slot}.log") if t > pause.resumed_at),
                        default=float("inf"))
        # Before it wins the lease again it must not lead (another took the lease, or it lapsed):
        # a call it had not sent before the pause is a fencing failure.
        before = {r["key"] for r in requests if r["sender"] == sender and r["at"] < pause.stopped_at}
        for r in requests:
            if r["sender"] == sender and pause.resumed_at < r["at"] < min(pause.resumed_at + 3.0, won_again) \
                    and r["key"] not in before:
                report.fencing_problems.append(f"{sender} sent {r['key']} {r['at'] - pause.resumed_at:.1f}s after resuming")


def _publish_orders(producer: KafkaProducer, topic: str, p: Plan, store: str, over_s: float) -> None:
    """The orders in bursts; then, once the bulk's customers are in the store, the bulk and its
    ticks. They are keyed by partner, the customers by customer: on other partitions, nothing
    orders them (CONTRACT.md section 5), and a processor killed mid-way holds its partitions
    back for a rebalance while the others go on."""
    _publish(producer, topic, p.messages[p.reference:p.bulk_at], over_s)
    if p.bulk_at == len(p.messages):
        return
    _wait_for_subscriptions(store, [f"sb{n}-{product}" for n in range(p.bulk_customers) for product in ("p1", "p3")])
    _publish(producer, topic, p.messages[p.bulk_at:], 1.0)


def _wait_for_subscriptions(store: str, subscription_ids: list[str]) -> None:
    from aggregates.subscription import Subscription

    wanted = [Subscription.create_id(s) for s in subscription_ids]
    app = open_store(store)
    try:
        while len(app.recorder.existing(wanted)) < len(wanted):  # type: ignore[attr-defined]
            time.sleep(0.5)
    finally:
        app.close()


def _publish(producer: KafkaProducer, topic: str, messages: list[tuple[bytes, bytes, int | None]], over_s: float) -> None:
    bursts = max(1, int(over_s / 0.5))
    size = max(1, len(messages) // bursts + 1)
    for i in range(0, len(messages), size):
        for key, value, partition in messages[i : i + size]:
            producer.send(topic, key=key, value=value, partition=partition)
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
        elif key in p.transfers and got[0]["payload"].get("reason_code") == "PAIRING_TIMEOUT" and key not in p.orphans:
            report.false_expiries.append(f"{key}: {got[0]['payload'].get('detail')}")
        elif key in p.transfers and got[0]["type"] != p.transfers[key]:
            report.wrong_outcomes.append(f"{key}: {got[0]['type']} {got[0]['payload'].get('reason_code')}, "
                                         f"planned {p.transfers[key]}")
        elif key in p.bulk_requests and got[0]["type"] != p.bulk_requests[key]:
            report.wrong_outcomes.append(f"bulk request {key}: {got[0]['type']}, planned {p.bulk_requests[key]}")
    finished = finals.get(f"migration.bulk_finished:{BULK_ID}", [])
    planned = {"migrated": 2 * p.bulk_customers, "rejected": 0, "cancelled": 0}
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
    _throttling(report, vendor.state.requests)
    if set(vendor.state.accepted) != completed:
        report.vendor_problems.append(f"accepted calls for {len(vendor.state.accepted)} keys, "
                                      f"{len(completed)} transfers completed")
    for key, b in bodies.items():
        if len(b) > 1:
            docs = [json.loads(x) for x in sorted(b)]
            differs = {k: [d.get(k) for d in docs] for k in sorted(set().union(*docs)) if len({json.dumps(d.get(k)) for d in docs}) > 1}
            report.vendor_problems.append(f"{key}: {len(b)} different bodies, differing in {differs}")
    for key in sorted(p.orphans):
        got = finals.get(key, [])
        if got and got[0]["payload"].get("reason_code") != "PAIRING_TIMEOUT":
            report.wrong_outcomes.append(f"orphan {key}: {got[0]['payload'].get('reason_code')}")
    report.overlaps = [f"{o['subscription_id']}: {', '.join(o['keys'])}" for o in vendor.state.overlaps]
    report.dead_letters = len(letters)
    _check_seats(report, p, store)
    _check_chains(report, vendor, store)


def _check_chains(report: Report, vendor: VendorSimulator, store: str) -> None:
    """Per subscription, the accepted calls in the order the vendor accepted them: each
    `seats_before` is the previous `seats_after`, and the last `seats_after` is the store's."""
    from aggregates.subscription import Subscription

    chains: dict[str, list[tuple[float, int, int, str]]] = defaultdict(list)
    for key, accepted in vendor.state.accepted.items():
        body = accepted["body"].model_dump(mode="json")
        for part in ("source", "target"):
            chains[body[part]["subscription_id"]].append(
                (accepted["at"], body[part]["seats_before"], body[part]["seats_after"], key))
    app = open_store(store)
    try:
        for sub, calls in chains.items():
            calls.sort()
            for before, after in zip(calls, calls[1:], strict=False):
                if after[1] != before[2]:
                    report.chain_problems.append(f"{sub}: {after[3]} says {after[1]} seats before, "
                                                 f"{before[3]} left {before[2]}")
            seats = app.repository.get(Subscription.create_id(sub)).seats
            if seats != calls[-1][2]:
                report.chain_problems.append(f"{sub}: the store has {seats} seats, the vendor was last told {calls[-1][2]}")
    finally:
        app.close()


def _check_seats(report: Report, p: Plan, store: str) -> None:
    from aggregates.customer import Customer
    from aggregates.subscription import Subscription

    app = open_store(store)
    try:
        for n in range(p.bulk_customers):  # one subscription per product, the requested ones with their own keys
            c = f"sb{n}"
            bundle = app.repository.get(Customer.create_id(c)).bundle or []
            products = [e["product_id"] for e in bundle]
            if sorted(products) != ["p1", "p3"] or {e["subscription_key"] for e in bundle} != {f"K-{c}", f"K3-{c}"}:
                report.wrong_outcomes.append(f"bulk customer {c}: bundle {bundle}")
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
    parser.add_argument("--brokers", type=int, default=3, help="Apache Kafka brokers started for the storm (default 3)")
    parser.add_argument("--broker-kills", type=int, default=2, metavar="N",
                        help="SIGKILL and restart the broker leading the most orders partitions N times, the "
                             "last time the active controller (needs --brokers 3; default 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", metavar="DIR", help="keep each processor's log here")
    parser.add_argument("--gap", type=float, nargs=2, default=(2.0, 4.0), metavar=("MIN_S", "MAX_S"),
                        help="seconds between kills, drawn between the two (default 2 4)")
    parser.add_argument("--leader-every", type=int, default=4, metavar="N",
                        help="every N-th kill aims at the outbox leader (1: every kill)")
    parser.add_argument("--pauses", type=int, default=4, help="SIGSTOPs (every other one at the leader)")
    parser.add_argument("--pause-s", type=float, default=12.0, help="how long each pause lasts")
    parser.add_argument("--outage", type=float, default=20.0, metavar="S", help="database outage half way (0: none)")
    parser.add_argument("--throttle-share", type=float, default=0.0, metavar="SHARE",
                        help="the vendor answers 429 (Retry-After 1-3 s) to this share of attempts")
    parser.add_argument("--baseline", action="store_true",
                        help="also run the same stream without faults, for storm-time throughput as a share of it")
    args = parser.parse_args()
    if args.logs:
        os.makedirs(args.logs, exist_ok=True)
    report = run_storm(args.transfers, args.migrations, args.kills, args.processes, args.seed, args.logs,
                       gap_s=tuple(args.gap), leader_every=max(1, args.leader_every),  # type: ignore[arg-type]
                       pauses=args.pauses, pause_s=args.pause_s, outage_s=args.outage, brokers=args.brokers,
                       broker_kills=args.broker_kills, throttle_share=args.throttle_share)
    print(report.table())
    if args.baseline:
        calm = run_storm(args.transfers, args.migrations, 0, args.processes, args.seed, None, say=lambda _: None,
                         gap_s=tuple(args.gap), pauses=0, outage_s=0.0, flow_s=report.flow_s,  # type: ignore[arg-type]
                         brokers=args.brokers)
        share = report.completed_per_s / calm.completed_per_s if calm.completed_per_s else 0.0
        print(f"\nsame stream without faults: {calm.completed_per_s:.1f} completed transfers/s "
              f"(storm: {report.completed_per_s:.1f}/s, {share:.0%} of it); problems without faults: {not calm.ok}")
    for problem in (report.lost[:10] + report.contradictions[:10] + report.wrong_outcomes[:10]
                    + report.false_expiries[:10] + report.vendor_problems[:10] + report.chain_problems[:10]
                    + report.overlaps[:10] + report.fencing_problems[:10] + report.seat_problems[:10]):
        print("problem:", problem)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
