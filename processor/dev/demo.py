"""`coterm demo`: bundled broker, fresh SQLite store and vendor simulator, end to end."""

import json
import secrets
import shutil
import sys
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from kafka import KafkaProducer

from aggregates.bulk import bulk_request_id
from processor.consume.inbox import Inbox
from processor.consume.runner import Progress, run
from processor.dev.broker import ON_BUNDLED_BROKER, BundledBroker
from processor.dev.demo_stream import (
    BULKS,
    LATER_DAYS,
    RETIRED_PLAN,
    TODAY,
    Message,
    build_stream,
)
from processor.dev.vendor_sim import Faults, VendorSimulator
from processor.kafka_io import ensure_topics, read_topic
from processor.log_setup import configure_logging
from processor.orders_out import KafkaOrders
from processor.outbox.process import SharedStatus
from processor.settings import Settings
from processor.store.opening import open_store
from projections.api import create_app
from projections.projection import Projection
from projections.staff import Staff, hash_token

DEMO_DIR = Path("var/demo")
PAIRING_TIMEOUT_S = 5.0  # short, so the demo's orphan half expires while you watch


_OUT = {"stream": sys.stdout}  # with --json the narration goes to stderr; stdout holds the summary alone


def run_demo(customers: int = 300, seed: int = 42, as_json: bool = False,
             serve: tuple[str, int] | None = None) -> int:
    """`serve` (host, port): after the stream, keep everything running behind the dashboard."""
    _OUT["stream"] = sys.stderr if as_json else sys.stdout
    store = _fresh_demo_dir()
    stream = build_stream(customers, seed)
    say(f"coterm demo: {customers} customers, {len(stream.reference)} reference messages, "
        f"{len(stream.orders)} orders (incl. duplicates and malformed ones)")
    with BundledBroker() as broker:
        vendor = VendorSimulator(faults=Faults(fail_rate=0.2, reject_plans=[RETIRED_PLAN], seed=seed)).start()
        say(f"  broker    {broker.bootstrap} (bundled Tansu, in memory)")
        say(f"  vendor    {vendor.url} (simulator: 20% of attempts answer 503, plan {RETIRED_PLAN} is refused)")
        say(f"  store     {store} (SQLite); logs in {DEMO_DIR / 'coterm.log'}")
        settings = Settings(kafka_bootstrap=broker.bootstrap, store=store, vendor_url=vendor.url,
                            pairing_timeout_s=PAIRING_TIMEOUT_S, group_id="coterm-demo", **ON_BUNDLED_BROKER)
        ensure_topics(broker.bootstrap, [settings.topic_orders, settings.topic_results, settings.topic_deadletter],
                      partitions=settings.topic_partitions)
        watch = _Watch()
        app, stop = open_store(store), threading.Event()
        projection = Projection(app)  # read models for `coterm serve`, kept current as in `coterm run`
        worker = threading.Thread(target=run, args=(app, settings, broker.bootstrap, stop), daemon=True,
                                  kwargs={"on_progress": watch.update, "followers": [projection.catch_up],
                                          "log_path": str(DEMO_DIR / "coterm.log")})
        started = time.monotonic()
        worker.start()
        try:
            _play(stream, broker.bootstrap, settings.topic_orders, watch)
            if serve is not None:
                _summary(_read_all(broker.bootstrap, settings.topic_results),
                         _read_all(broker.bootstrap, settings.topic_deadletter), vendor, watch, time.monotonic() - started)
                _serve_live(settings, store, *serve)
        finally:
            stop.set()
            worker.join(timeout=60)
            projection.run_to_end()  # whatever the last loop left: the dashboard starts current
            app.close()
        if serve is not None:  # the summary came before the dashboard
            vendor.stop()
            return 0
        elapsed = time.monotonic() - started
        results = _read_all(broker.bootstrap, settings.topic_results)
        letters = _read_all(broker.bootstrap, settings.topic_deadletter)
        summary = _summary(results, letters, vendor, watch, elapsed)
        vendor.stop()
    say(f"\nThe store stays in {store}. Look inside with:  COTERM_STORE={store} .venv/bin/coterm serve")
    if as_json:
        print(json.dumps({**summary, "store": store}, indent=2), flush=True)
    return 0


def _play(stream: Any, bootstrap: str, topic: str, watch: "_Watch") -> None:
    """The stream in its acts, each waited for: reference data, orders, bulks, later business days."""
    _publish(bootstrap, topic, stream.reference)
    watch.wait_for(len(stream.reference), "reference data")
    _publish(bootstrap, topic, stream.orders)
    done = len(stream.reference) + len(stream.orders)
    watch.wait_for(done, "orders", settle_s=PAIRING_TIMEOUT_S + 2)
    say(f"\nBulk migrations on {TODAY + timedelta(days=1)}: " + ", ".join(BULKS) + "; then the business "
        f"date moves on ({len(LATER_DAYS)} clock.tick messages, up to {TODAY + timedelta(days=LATER_DAYS[-1])})")
    _publish(bootstrap, topic, stream.bulk)
    done += len(stream.bulk)
    watch.wait_for(done, "bulk migrations")
    for message in stream.later:  # one by one: each business day's decisions before the next
        _publish(bootstrap, topic, [message])
        done += 1
        watch.wait_for(done, "business days", quiet=True)


def _serve_live(settings: Settings, store: str, host: str, port: int) -> None:
    """The dashboard over the demo's store, with orders placed from it going to the demo's broker,
    decided by the demo's processor and sent to its vendor simulator; until Ctrl-C."""
    # Fresh tokens each run; the file holds only their hashes. Beside the staff user, a partner's and
    # a distributor's administrator: their view is their own customers only.
    token, partner_token, distributor_token = (secrets.token_urlsafe(18) for _ in range(3))
    staff_file = DEMO_DIR / "staff.json"
    staff_file.write_text(json.dumps({"users": [
        {"name": "demo-admin", "token_sha256": hash_token(token), "roles": ["Account Administrator"]},
        {"name": "partner-3-admin", "token_sha256": hash_token(partner_token), "roles": ["Partner Administrator"],
         "partner_id": "partner-3"},
        {"name": "dist-1-admin", "token_sha256": hash_token(distributor_token), "roles": ["Distributor Administrator"],
         "distributor_id": "dist-1"}]}, indent=2))
    orders = KafkaOrders(settings)
    app = open_store(store)
    say(f"\nServing the dashboard on http://{host}:{port}/ with a processor, the broker and the vendor simulator "
        f"behind it.\n  Sign in with the staff token  {token}  (user demo-admin, Account Administrator: "
        f"{staff_file} holds its hash),\n  or as partner-3's administrator  {partner_token}  (its customers only),"
        f"\n  or as distributor dist-1's administrator  {distributor_token}  (its resellers' customers).\n"
        "  Start a migration from a customer's page, a partial upgrade from one "
        "of its subscriptions,\n  a bulk migration from Bulk migrations, a re-drive from a dead letter. "
        "Ctrl-C stops everything.")
    try:
        uvicorn.run(create_app(app, Staff.load(str(staff_file)), orders=orders), host=host, port=port,
                    log_level="warning")
    finally:
        orders.close()
        app.close()


def _fresh_demo_dir() -> str:
    """An empty var/demo with its log file open for logging; the store's path in it."""
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)  # the bundled broker starts empty, so the store must too
    DEMO_DIR.mkdir(parents=True)
    (DEMO_DIR / "coterm.log").write_text("")
    configure_logging((DEMO_DIR / "coterm.log").open("a"))  # appended to by the outbox process too
    return str(DEMO_DIR / "coterm.sqlite")


def say(text: str) -> None:
    print(text, file=_OUT["stream"], flush=True)


class _Watch:
    """Progress shared by the processor thread (writer) and the demo (reader)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.published = 0
        self.vendor_pending = 0
        self.waiting = 0
        self.duplicates = 0
        self.busy = True
        self.caught_up = False

    def update(self, progress: Progress, inbox: Inbox, outbox: SharedStatus) -> None:
        with self.lock:
            self.received = progress.received
            self.published = outbox.published.value
            self.vendor_pending = outbox.pending_calls.value
            self.waiting = outbox.waiting_halves.value
            self.duplicates = inbox.stats.duplicates
            self.caught_up = progress.caught_up
            self.busy = outbox.busy.value or not outbox.ready.value

    def line(self, total: int) -> str:
        with self.lock:
            return (f"  processed {self.received:>5}/{total}  results {self.published:>4}  "
                    f"vendor calls pending {self.vendor_pending:>3}  halves waiting {self.waiting:>2}  "
                    f"duplicates ignored {self.duplicates:>2}")

    def wait_for(self, total: int, what: str, settle_s: float = 0.0, timeout_s: float = 600, quiet: bool = False) -> None:
        deadline = time.monotonic() + timeout_s
        settled_since: float | None = None
        out = _OUT["stream"]
        tty = out.isatty()
        last_print = 0.0
        while time.monotonic() < deadline:
            with self.lock:
                done = self.received >= total and self.caught_up and not self.busy and self.waiting == 0
            now = time.monotonic()
            if not quiet and (tty or now - last_print > 2):
                print(("\r" if tty else "") + self.line(total), end="" if tty else "\n", file=out, flush=True)
                last_print = now
            if done:
                settled_since = settled_since or now
                if now - settled_since >= min(settle_s, 1.0):
                    break
            else:
                settled_since = None
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the demo's {what} were not processed within {timeout_s}s")
        if not quiet:
            print(("\r" if tty else "") + self.line(total) + f"  <- {what} done", file=out, flush=True)


def _publish(bootstrap: str, topic: str, messages: list[Message]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    for m in messages:
        producer.send(topic, key=m.key.encode() if m.key else None, value=m.value, partition=m.partition)
    producer.flush()
    producer.close()


def _read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic)]


def _table(title: str, rows: list[tuple[str, int]]) -> None:
    say(f"\n{title}")
    width = max([len(r[0]) for r in rows] + [10])
    for label, count in rows:
        say(f"  {label:<{width}}  {count:>5}")


def _summary(results: list[dict[str, Any]], letters: list[dict[str, Any]], vendor: VendorSimulator,
             watch: _Watch, elapsed: float) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    for r in results:
        p = r["payload"]
        if r["type"] == "transfer.rejected":
            outcomes[f"rejected {p['reason_code']}" + ("" if p["final"] else " (message only)")] += 1
        elif r["type"] == "transfer.failed":
            outcomes[f"failed {p['reason_code']}" + (" (parked)" if p["retryable"] else "")] += 1
        elif r["type"].startswith("transfer."):
            outcomes[r["type"].split(".")[1]] += 1
    _table("Seat transfers by outcome", sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0])))
    migrations = Counter(r["type"] for r in results if r["type"] in ("migration.completed", "migration.rejected"))
    products: Counter[str] = Counter()
    for r in results:
        if r["type"] in ("migration.completed", "migration.rejected"):
            products["product migrated (key kept)"] += len(r["payload"].get("migrated", []))
            for rej in r["payload"]["rejected"]:
                products[f"product refused {rej['reason_code']}"] += 1
    _table("Migrations to usage-based", sorted(migrations.items()) + sorted(products.items(), key=lambda kv: -kv[1]))
    bulks = _bulk_summary(results)
    for bulk_id, b in bulks.items():
        _table(f"Bulk migration {bulk_id} ({b['status']})", [
            ("customers", b["customers"]), ("products migrated at once", b["migrated_now"]),
            ("products scheduled for their window", b["scheduled"]), ("  of them migrated on their day", b["migrated_later"]),
            ("  of them refused on their day", b["refused_later"]), ("  of them dropped by a cancel", b["cancelled"]),
            ("products refused", b["refused"])])
    _table("Dead letters", sorted(Counter(d["reason"] for d in letters).items()))
    completed = outcomes["completed"]
    with vendor.state.lock:
        accepted, attempts = len(vendor.state.accepted), len(vendor.state.requests)
    _table("Vendor", [("calls accepted by the vendor", accepted), ("completed transfers", completed),
                      ("HTTP attempts incl. retries", attempts), ("duplicate messages ignored", watch.duplicates)])
    verdict = "OK" if accepted == completed else "MISMATCH"
    say(f"\nExactly one vendor call per completed transfer: {verdict} ({accepted} = {completed}); "
        f"{len(results)} results, {len(letters)} dead letters in {elapsed:.1f}s")
    return {"transfers": dict(outcomes), "migrations": dict(migrations), "migration_products": dict(products),
            "dead_letters": dict(Counter(d["reason"] for d in letters)), "vendor_calls_accepted": accepted,
            "completed_transfers": completed, "vendor_attempts": attempts, "duplicates_ignored": watch.duplicates,
            "one_call_per_completed_transfer": accepted == completed, "bulk_migrations": bulks,
            "results": len(results), "seconds": round(elapsed, 1)}


def _bulk_summary(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per bulk, from its results alone: what the first decisions migrated, what waited for its
    window and how that ended."""
    out: dict[str, dict[str, Any]] = {}
    for bulk_id in BULKS:
        accepted = [r["payload"] for r in results if r["type"] == "migration.bulk_accepted" and r["payload"]["bulk_id"] == bulk_id]
        finished = [r["payload"] for r in results if r["type"] == "migration.bulk_finished" and r["payload"]["bulk_id"] == bulk_id]
        if not accepted:
            continue
        customers = accepted[0]["customers"]
        first = {bulk_request_id(bulk_id, c) for c in customers}
        later = {bulk_request_id(bulk_id, s["customer_id"], date.fromisoformat(s["on"])) for s in accepted[0]["scheduled"]}
        migrated_now = migrated_later = refused_later = refused = 0
        for r in results:
            request_id = r["payload"].get("request_id")
            if r["type"] not in ("migration.completed", "migration.rejected") or request_id not in first | later:
                continue
            migrated = len({m["product_id"] for m in r["payload"].get("migrated", [])})
            if request_id in first:
                migrated_now += migrated
                refused += sum(x["reason_code"] != "NOT_IN_RENEWAL_WINDOW" for x in r["payload"]["rejected"])
            else:
                migrated_later += migrated
                refused_later += len(r["payload"]["rejected"])
        counts = finished[0]["counts"] if finished else {}
        out[bulk_id] = {"customers": len(customers), "migrated_now": migrated_now, "scheduled": len(accepted[0]["scheduled"]),
                        "migrated_later": migrated_later, "refused_later": refused_later,
                        "cancelled": counts.get("cancelled", 0), "refused": refused,
                        "status": finished[0]["status"] if finished else "still scheduled"}
    return out
