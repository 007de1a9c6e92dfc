"""The benchmark's workload, through the wire contract: reference data, then transfers.

Each transfer moves 1 seat from a random source subscription into a new co-termed
subscription (two messages: downgrade then upgrade, keyed by customer). Sources hold
many seats, so every transfer completes.
"""

import argparse
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

PRODUCT = "bench-product"
PURCHASED = "2026-01-05"
ORDER_DAY = "2026-11-02"


@dataclass(frozen=True)
class Message:
    key: str
    value: bytes
    operation_id: str | None = None


def _envelope(rnd: random.Random, type_: str, payload: dict[str, Any], occurred_at: str) -> bytes:
    return json.dumps({"message_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "type": type_,
                       "schema_version": 1, "occurred_at": occurred_at, "source": "bench",
                       "payload": payload}).encode()


def reference_data(tag: str, customers: int, subscriptions_each: int, seed: int = 1) -> list[Message]:
    rnd = random.Random(f"{tag}/{seed}")  # the tag in the seed: two workloads in one store share no message id
    out = [Message(PRODUCT, _envelope(rnd, "catalog.product_defined", {
        "product_id": PRODUCT, "name": "Bench product", "supports_usage_based": True, "in_usage_bundle": False},
        "2025-01-01T08:00:00Z"))]
    for c in range(customers):
        customer = f"{tag}-c{c:04d}"
        out.append(Message(customer, _envelope(rnd, "customer.registered", {
            "customer_id": customer, "partner_id": "partner-bench", "name": f"Customer {c}", "channel": "direct",
            "distributor_id": None, "data_complete": True}, "2025-12-01T08:00:00Z")))
        for s in range(subscriptions_each):
            out.append(Message(customer, _envelope(rnd, "subscription.purchased", {
                "subscription_id": f"{customer}-s{s}", "customer_id": customer, "product_id": PRODUCT,
                "plan_id": "plan-a", "billing_model": "annual", "management": "partner_managed",
                "seats": 1_000_000, "term_months": 12, "start_date": PURCHASED, "end_date": "2027-01-04",
                "subscription_key": f"KEY-{customer}-s{s}"}, f"{PURCHASED}T09:00:00Z")))
    return out


def transfers(tag: str, count: int, customers: int, subscriptions_each: int, seed: int = 2,
              first: int = 0) -> list[Message]:
    """Two messages per transfer, the downgrade first, each pair adjacent in the stream."""
    rnd = random.Random(f"{tag}/{seed + first}")
    out = []
    for n in range(first, first + count):
        customer = f"{tag}-c{rnd.randrange(customers):04d}"
        source = f"{customer}-s{rnd.randrange(subscriptions_each)}"
        op = f"{tag}-op{n:07d}"
        at = f"{ORDER_DAY}T10:{(n // 60) % 60:02d}:{n % 60:02d}Z"
        out.append(Message(customer, _envelope(rnd, "transfer.downgrade_ordered", {
            "operation_id": op, "order_id": f"{op}-down", "customer_id": customer, "subscription_id": source,
            "seats": 1, "requested_by": "bench"}, at), op))
        out.append(Message(customer, _envelope(rnd, "transfer.upgrade_ordered", {
            "operation_id": op, "order_id": f"{op}-up", "customer_id": customer, "seats": 1, "requested_by": "bench",
            "target": {"kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": PRODUCT,
                       "plan_id": "plan-b", "term_months": 12}}, at), op))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The workload's size and the store, as every benchmark of transfers takes them."""
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=5, help="source subscriptions per customer")
    parser.add_argument("--store", help="a postgresql:// URL (default: a fresh SQLite file)")
