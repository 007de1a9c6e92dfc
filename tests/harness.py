"""Real infrastructure for integration tests: the bundled broker, stores, the vendor simulator."""

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from aggregates.application import Orders
from processor.consume.runner import run
from processor.dev.broker import ON_BUNDLED_BROKER
from processor.kafka_io import ensure_topics, read_topic
from processor.settings import Settings
from processor.store.opening import open_store




# Bootstrap addresses of bundled (Tansu) brokers started by the fixtures: a Scenario on one of
# them runs with what coterm sets on that broker (processor/dev/broker.py, ON_BUNDLED_BROKER).
TANSU_BOOTSTRAPS: set[str] = set()


def envelope(type_: str, payload: dict[str, Any], occurred_at: str = "2026-11-01T10:00:00Z",
             message_id: str | None = None) -> dict[str, Any]:
    return {"message_id": message_id or str(uuid.uuid4()), "type": type_, "schema_version": 1,
            "occurred_at": occurred_at, "source": "tests", "payload": payload}


@dataclass
class Scenario:
    """One test's world: its own topics, consumer group and store."""

    bootstrap: str
    store: str
    vendor_url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    pairing_timeout_s: float = 900.0
    vendor_max_attempts: int = 8

    def __post_init__(self) -> None:
        self.settings = Settings(
            kafka_bootstrap=self.bootstrap, store=self.store, vendor_url=self.vendor_url,
            topic_orders=f"orders-{self.tag}", topic_results=f"results-{self.tag}",
            topic_deadletter=f"deadletter-{self.tag}", group_id=f"coterm-{self.tag}",
            pairing_timeout_s=self.pairing_timeout_s, vendor_max_attempts=self.vendor_max_attempts,
            topic_partitions=3, **(ON_BUNDLED_BROKER if self.bootstrap in TANSU_BOOTSTRAPS else {}),
        )
        ensure_topics(self.bootstrap, [self.settings.topic_orders, self.settings.topic_results,
                                       self.settings.topic_deadletter], partitions=3)
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")

    def with_settings(self, **changes: Any) -> None:
        self.settings = self.settings.model_copy(update=changes)

    def env(self) -> dict[str, str]:
        s = self.settings
        return {"COTERM_KAFKA_BOOTSTRAP": self.bootstrap, "COTERM_STORE": self.store, "COTERM_VENDOR_URL": s.vendor_url or "",
                "COTERM_TOPIC_ORDERS": s.topic_orders, "COTERM_TOPIC_RESULTS": s.topic_results,
                "COTERM_TOPIC_DEADLETTER": s.topic_deadletter, "COTERM_GROUP_ID": s.group_id,
                "COTERM_PAIRING_TIMEOUT_S": str(s.pairing_timeout_s),
                "COTERM_VENDOR_MAX_ATTEMPTS": str(s.vendor_max_attempts), "COTERM_TOPIC_PARTITIONS": str(s.topic_partitions),
                "COTERM_KAFKA_STATIC_MEMBERSHIP": str(s.kafka_static_membership).lower(),
                "COTERM_KAFKA_LIST_OFFSETS": s.kafka_list_offsets}

    # -- input ------------------------------------------------------------------------------
    def send(self, type_: str, payload: dict[str, Any], key: str | None = None, partition: int | None = None,
             flush: bool = True, **envelope_fields: Any) -> dict[str, Any]:
        """One message in its envelope, keyed by its customer or product unless told; `flush=False`
        leaves it to a later flush, so that many go out in one burst."""
        message = envelope(type_, payload, **envelope_fields)
        self.send_raw(json.dumps(message).encode(), key=key or payload.get("customer_id") or payload.get("product_id"),
                      partition=partition, flush=flush)
        return message

    def send_many(self, messages: list[tuple[str, dict[str, Any], str, str]]) -> list[dict[str, Any]]:
        """(type, payload, key, occurred_at) each, produced in order with one flush at the end."""
        sent = [self.send(type_, payload, key=key, occurred_at=occurred_at, flush=False)
                for type_, payload, key, occurred_at in messages]
        self.producer.flush()
        return sent

    def send_raw(self, value: bytes | None, key: str | None = None, partition: int | None = None,
                 flush: bool = True) -> None:
        self.producer.send(self.settings.topic_orders, value=value, key=key.encode() if key else None, partition=partition)
        if flush:
            self.producer.flush()

    # -- processing -------------------------------------------------------------------------
    def process(self, idle_s: float = 1.0, timeout_s: float = 90.0) -> None:
        """Run the real processor loop until it is idle."""
        app = open_store(self.store)
        stop = threading.Event()
        timer = threading.Timer(timeout_s, stop.set)
        timer.start()
        try:
            run(app, self.settings, self.bootstrap, stop, until_idle_s=idle_s)
        finally:
            timer.cancel()
            app.close()
        assert not stop.is_set(), f"processor did not become idle within {timeout_s}s"

    def open_store(self) -> Orders:
        return open_store(self.store)

    # -- output -----------------------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in read_topic(self.bootstrap, self.settings.topic_results)]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in read_topic(self.bootstrap, self.settings.topic_deadletter)]

    def results_for(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.results() if key in (r["payload"].get("operation_id"), r["payload"].get("request_id"))]


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event a `coterm run` wrote to `path`, in order."""
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{") and f'"{event}"' in line]


# -- a small business world the scenarios share ----------------------------------------------
def seed_reference_data(s: Scenario, customer: str = "c1") -> None:
    """A customer with an annual 10-seat subscription s1 and a 5-seat target t1 (keyed to one partition)."""
    s.send("catalog.product_defined", {"product_id": "p1", "name": "Elements EPP", "supports_usage_based": True,
                                       "in_usage_bundle": True}, key=customer)
    s.send("catalog.product_defined", {"product_id": "p2", "name": "M365 E5", "supports_usage_based": False,
                                       "in_usage_bundle": False}, key=customer)
    s.send("customer.registered", {"customer_id": customer, "partner_id": "partner-1", "name": "Acme", "channel": "direct",
                                   "distributor_id": None, "data_complete": True})
    for sub, product, seats in ((f"{customer}-s1", "p1", 10), (f"{customer}-t1", "p2", 5)):
        s.send("subscription.purchased", {"subscription_id": sub, "customer_id": customer, "product_id": product,
                                          "plan_id": f"plan-{product}", "billing_model": "annual",
                                          "management": "partner_managed", "seats": seats, "term_months": 12,
                                          "start_date": "2026-01-05", "end_date": "2027-01-04",
                                          "subscription_key": f"KEY-{sub}"}, occurred_at="2026-01-05T09:00:00Z")


def downgrade(op: str, customer: str = "c1", seats: int = 3, **extra: Any) -> dict[str, Any]:
    return {"operation_id": op, "order_id": f"{op}-down", "customer_id": customer,
            "subscription_id": f"{customer}-s1", "seats": seats, "requested_by": "ops", **extra}


def upgrade(op: str, customer: str = "c1", seats: int = 3, existing: bool = False, plan: str = "plan-new",
            **extra: Any) -> dict[str, Any]:
    target = ({"kind": "existing_subscription", "subscription_id": f"{customer}-t1"} if existing else
              {"kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": "p2",
               "plan_id": plan, "term_months": 12})
    return {"operation_id": op, "order_id": f"{op}-up", "customer_id": customer, "seats": seats,
            "requested_by": "ops", "target": target, **extra}


@contextmanager
def serving_live(s: Scenario, staff: Any, **options: Any) -> Iterator[str]:
    """`coterm serve` (its app, over real HTTP) placing orders on the scenario's topic, and a
    processor deciding them in the background, as a stack runs them; the API's URL."""
    from processor.orders_out import KafkaOrders
    from tests.http_server import serving

    processor_store, stop = s.open_store(), threading.Event()
    worker = threading.Thread(target=run, args=(processor_store, s.settings, s.bootstrap, stop), daemon=True)
    worker.start()
    app, orders = s.open_store(), KafkaOrders(s.settings)
    try:
        with serving(app, staff, orders=orders, **options) as url:
            yield url
    finally:
        stop.set()
        worker.join(timeout=60)
        orders.close()
        app.close()
        processor_store.close()
