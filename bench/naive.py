"""A naive baseline processor, for comparison only: plain SQL, one table per entity, on SQLite
(`sqlite3`) or, given a `postgresql://` URL, on PostgreSQL (`psycopg`, each statement a round
trip, as the obvious code makes them).

The same guarantees as coterm on the benchmark's workload, written the obvious way:
one transaction per polled batch holding the state changes, the message ids seen and
the Kafka positions; pairing by operation id; one vendor call per pair (an outbox row,
`Idempotency-Key` = operation id, retried on 5xx); results published from an outbox
table and marked once Kafka acknowledged them. No event history, no read models.

  python -m bench.naive BOOTSTRAP DB VENDOR_URL TOPIC_ORDERS TOPIC_RESULTS

DB is a SQLite file or a PostgreSQL URL; its `?schema=NAME` (as coterm's store URLs take it) puts
the tables in a schema of their own.
"""

import json
import sqlite3
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from datetime import date
from typing import Any
from urllib.parse import parse_qs

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from psycopg import sql

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (id TEXT PRIMARY KEY, customer_id TEXT, seats INTEGER, term_months INTEGER,
    start_date TEXT, end_date TEXT, purchased_on TEXT, resource_count INTEGER, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (id TEXT PRIMARY KEY, down TEXT, up TEXT, status TEXT NOT NULL, request TEXT);
CREATE INDEX IF NOT EXISTS transfers_status ON transfers (status);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0);
"""


class Postgres:
    """psycopg behind sqlite3's `execute(statement, params)` with its `?` placeholders, so the
    processor below is one code on both stores. Autocommit, with the processor's own BEGIN and
    COMMIT around a batch, as on SQLite; psycopg prepares a statement it has run five times."""

    def __init__(self, url: str) -> None:
        base, schema = _in_schema(url)
        self.conn = psycopg.connect(base, autocommit=True)
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        self.conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]

    def close(self) -> None:
        self.conn.close()

    def executescript(self, script: str) -> None:
        for statement in script.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY").split(";"):
            if statement.strip():
                self.conn.execute(statement)  # type: ignore[call-overload]


def _in_schema(url: str) -> tuple[str, str]:
    """The server's URL and the schema its `?schema=` names (`public` without one)."""
    base, _, query = url.partition("?")
    return base, parse_qs(query).get("schema", ["public"])[0]


def connect(path: str) -> Any:
    if path.startswith("postgresql://"):
        db: Any = Postgres(path)
        db.executescript(SCHEMA)
        return db
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def positions(path: str) -> dict[int, int]:
    """The next offset the baseline will apply, by partition; none before its tables exist. Reads
    only: making the tables here too could race the baseline's own start on PostgreSQL."""
    query = "SELECT partition, next_offset FROM positions"
    try:
        if path.startswith("postgresql://"):
            base, schema = _in_schema(path)
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                return dict(conn.execute(query).fetchall())  # type: ignore[arg-type]
        with closing(sqlite3.connect(path)) as db:
            return dict(db.execute(query).fetchall())
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return {}


def apply(db: Any, value: bytes) -> None:
    msg = json.loads(value)
    if db.execute("SELECT 1 FROM seen WHERE message_id = ?", (msg["message_id"],)).fetchone():
        return
    db.execute("INSERT INTO seen VALUES (?)", (msg["message_id"],))
    p, kind = msg["payload"], msg["type"]
    if kind == "customer.registered":
        db.execute("INSERT INTO customers VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                   (p["customer_id"], json.dumps(p)))
    elif kind == "subscription.purchased":
        db.execute("INSERT INTO subscriptions VALUES (?,?,?,?,?,?,?,?,?)", (
            p["subscription_id"], p["customer_id"], p["seats"], p["term_months"], p["start_date"], p["end_date"],
            msg["occurred_at"][:10], p.get("resource_count", 1), json.dumps(p)))
    elif kind in ("transfer.downgrade_ordered", "transfer.upgrade_ordered"):
        half(db, "down" if kind == "transfer.downgrade_ordered" else "up", {**p, "occurred_at": msg["occurred_at"]},
             msg["message_id"])


def half(db: Any, side: str, p: dict[str, Any], cause: str) -> None:
    op = p["operation_id"]
    row = db.execute("SELECT down, up, status FROM transfers WHERE id = ?", (op,)).fetchone()
    if row is None:
        db.execute(f"INSERT INTO transfers (id, {side}, status) VALUES (?, ?, 'waiting')", (op, json.dumps(p)))
        return
    if row[2] != "waiting" or row[0 if side == "down" else 1] is not None:
        return
    other = json.loads(row[1] if side == "down" else row[0])
    down, up = (p, other) if side == "down" else (other, p)
    source = db.execute("SELECT customer_id, seats, term_months, start_date, end_date, purchased_on, resource_count "
                        "FROM subscriptions WHERE id = ?", (down["subscription_id"],)).fetchone()
    on = max(down["occurred_at"], up["occurred_at"])[:10]
    reason = check(down, up, source, on)
    if reason:
        db.execute(f"UPDATE transfers SET {side} = ?, status = 'rejected' WHERE id = ?", (json.dumps(p), op))
        result(db, "transfer.rejected", cause, op, {"operation_id": op, "order_id": None, "reason_code": reason,
                                                     "detail": reason, "final": True})
        return
    target = up["target"]
    request = {"operation_id": op, "customer_id": down["customer_id"], "seats": down["seats"],
               "source": {"subscription_id": down["subscription_id"], "seats_before": source[1],
                          "seats_after": source[1] - down["seats"]},
               "target": {"kind": "new_subscription", "subscription_id": target["new_subscription_id"],
                          "plan_id": target["plan_id"], "seats_before": 0, "seats_after": down["seats"],
                          "start_date": source[3], "renewal_date": source[4],
                          "billing_start_date": date.fromordinal(date.fromisoformat(on).toordinal() + 1).isoformat()}}
    db.execute(f"UPDATE transfers SET {side} = ?, status = 'requested', request = ? WHERE id = ?",
               (json.dumps(p), json.dumps({"cause": cause, "body": request}), op))


def check(down: dict[str, Any], up: dict[str, Any], source: Any, on: str) -> str | None:
    if source is None or not source[3] <= on <= source[4]:
        return "SUBSCRIPTION_UNKNOWN"
    if down["customer_id"] != up["customer_id"] or source[0] != down["customer_id"]:
        return "CUSTOMER_MISMATCH"
    if down["seats"] != up["seats"]:
        return "SEAT_COUNT_MISMATCH"
    if down["seats"] >= source[1]:
        return "INSUFFICIENT_SEATS"
    if source[6] != 1:
        return "MULTI_RESOURCE_PLAN"
    if on in (source[3], source[5]):
        return "SAME_DAY_AS_PURCHASE"
    if up["target"].get("term_months") != source[2]:
        return "TERM_LENGTH_MISMATCH"
    return None


def result(db: Any, type_: str, cause: str, key: str, payload: dict[str, Any]) -> None:
    envelope = {"message_id": str(uuid.uuid5(uuid.UUID(cause), type_)), "type": type_, "schema_version": 1,
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": "naive",
                "causation_id": cause, "payload": payload}
    db.execute("INSERT INTO outbox (key, value) VALUES (?, ?)", (key, json.dumps(envelope)))


def call_vendor(url: str, body: dict[str, Any]) -> str:
    data = json.dumps(body).encode()
    for attempt in range(8):
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": body["operation_id"]})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())["vendor_reference"]
        except urllib.error.HTTPError as error:
            if error.code == 409:
                return json.loads(error.read())["vendor_reference"]
            if error.code < 500:
                raise
        except OSError:
            pass
        time.sleep(min(0.2 * 2**attempt, 10))
    raise RuntimeError("vendor unavailable")


def complete(db: Any, op: str, reference: str) -> None:
    cause, body = (lambda r: (r["cause"], r["body"]))(json.loads(
        db.execute("SELECT request FROM transfers WHERE id = ?", (op,)).fetchone()[0]))
    seats, target = body["seats"], body["target"]
    db.execute("UPDATE transfers SET status = 'completed' WHERE id = ?", (op,))
    db.execute("UPDATE subscriptions SET seats = seats - ? WHERE id = ?", (seats, body["source"]["subscription_id"]))
    source = db.execute("SELECT customer_id, term_months, start_date, end_date FROM subscriptions WHERE id = ?",
                        (body["source"]["subscription_id"],)).fetchone()
    db.execute("INSERT INTO subscriptions VALUES (?,?,?,?,?,?,?,?,?)", (
        target["subscription_id"], source[0], seats, source[1], source[2], source[3], target["billing_start_date"], 1,
        json.dumps(target)))
    result(db, "transfer.completed", cause, op, {
        "operation_id": op, "source_subscription_id": body["source"]["subscription_id"],
        "target_subscription_id": target["subscription_id"], "seats": seats, "vendor_reference": reference})


def main(bootstrap: str, path: str, vendor_url: str, topic_orders: str, topic_results: str) -> None:
    db = connect(path)
    # One process reads every partition, its positions in its own database: no consumer group.
    # (A group's join sometimes hung in kafka-python until the bench gave up after 5 minutes.)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=200)
    while not (partitions := consumer.partitions_for_topic(topic_orders)):
        time.sleep(0.1)
    consumer.assign([TopicPartition(topic_orders, p) for p in sorted(partitions)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    pool = ThreadPoolExecutor(8)
    in_flight: dict[str, Future[str]] = {}
    url = vendor_url.rstrip("/") + "/v1/transfers"
    while True:
        batch = consumer.poll(timeout_ms=200, max_records=500)
        if batch:
            db.execute("BEGIN")
            for tp, records in batch.items():
                stored = db.execute("SELECT next_offset FROM positions WHERE partition = ?", (tp.partition,)).fetchone()
                for record in records:
                    if stored is None or record.offset >= stored[0]:
                        apply(db, record.value)
                db.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (partition) DO UPDATE "
                           "SET next_offset = excluded.next_offset", (tp.partition, records[-1].offset + 1))
            db.execute("COMMIT")
        for op, request in db.execute("SELECT id, request FROM transfers WHERE status = 'requested'").fetchall():
            if op not in in_flight:
                in_flight[op] = pool.submit(call_vendor, url, json.loads(request)["body"])
        done = [op for op, f in in_flight.items() if f.done()]
        if done:
            db.execute("BEGIN")
            for op in done:
                complete(db, op, in_flight.pop(op).result())
            db.execute("COMMIT")
        rows = db.execute("SELECT seq, key, value FROM outbox WHERE published = 0 ORDER BY seq").fetchall()
        if rows:
            futures = [producer.send(topic_results, key=k.encode(), value=v.encode()) for _, k, v in rows]
            producer.flush()
            for f in futures:
                f.get(timeout=30)
            db.execute("UPDATE outbox SET published = 1 WHERE seq <= ?", (rows[-1][0],))
        if not batch and not done and in_flight:
            time.sleep(0.005)


if __name__ == "__main__":
    main(*sys.argv[1:6])
