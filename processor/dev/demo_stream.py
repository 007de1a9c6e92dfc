"""A realistic, seeded order stream for `coterm demo`: reference data first, then orders."""

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

TODAY = date(2026, 11, 2)  # the business date of the orders in the stream
PRODUCTS = [
    # product_id, name, supports_usage_based, in_usage_bundle
    ("elements-epp", "Elements Endpoint Protection", True, True),
    ("elements-edr", "Elements EDR", True, True),
    ("elements-vuln", "Elements Vulnerability Management", True, True),
    ("email-security", "Email and Collaboration Security", True, False),
    ("legacy-av", "Anti-Virus (legacy)", False, False),
    ("m365-e3", "Microsoft 365 E3 (NCE)", False, False),
    ("m365-e5", "Microsoft 365 E5 (NCE)", False, False),
]
SECURITY = ["elements-epp", "elements-edr", "elements-vuln", "email-security", "legacy-av"]
RETIRED_PLAN = "m365-e5-retired"


@dataclass
class Message:
    key: str | None
    value: bytes
    partition: int | None = None


@dataclass
class Stream:
    reference: list[Message] = field(default_factory=list)
    orders: list[Message] = field(default_factory=list)
    bulk: list[Message] = field(default_factory=list)  # bulk migrations, the day after the orders
    later: list[Message] = field(default_factory=list)  # business days passing: ticks, a cancel


BULKS = {"bulk-partner-3": "partner-3", "bulk-partner-5-pilot": "partner-5"}
LATER_DAYS = (30, 60, 120, 240, 335)  # the days the demo's clock ticks, after TODAY


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.stream = Stream()
        self.ids = 0

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rnd.getrandbits(128), version=4))

    def add(self, phase: list[Message], type_: str, payload: dict[str, Any], key: str | None, day: date,
            partition: int | None = None) -> dict[str, Any]:
        hour = self.rnd.randint(8, 17)
        envelope = {"message_id": self.uuid(), "type": type_, "schema_version": 1,
                    "occurred_at": f"{day.isoformat()}T{hour:02d}:{self.rnd.randint(0, 59):02d}:00Z",
                    "source": "commerce-platform", "payload": payload}
        phase.append(Message(key, json.dumps(envelope).encode(), partition))
        return envelope


def build_stream(customers: int, seed: int) -> Stream:
    b = _Builder(seed)
    ref, orders = b.stream.reference, b.stream.orders
    for product_id, name, usage, bundle in PRODUCTS:
        b.add(ref, "catalog.product_defined", {"product_id": product_id, "name": name, "supports_usage_based": usage,
                                               "in_usage_bundle": bundle}, product_id, TODAY - timedelta(days=400))
    for n in range(customers):
        _customer(b, f"cust-{n:04d}")
    _malformed(b)
    duplicates = b.rnd.sample(orders, k=min(20, len(orders)))
    _interleave(orders, b.rnd)
    orders.extend(duplicates)  # redelivered verbatim: same message_id, changes nothing
    _bulks(b, customers)
    return b.stream


def _bulks(b: _Builder, customers: int) -> None:
    """A partner migrates all its customers; another pilots a few (one unknown) and later cancels.
    Products whose renewal window opens later are scheduled and decided as the days pass."""
    products = ["elements-epp", "elements-edr", "email-security"]
    b.add(b.stream.bulk, "migration.bulk_requested", {
        "bulk_id": "bulk-partner-3", "partner_id": "partner-3", "requested_by": "partner-3-portal",
        "product_ids": products, "all_customers_of_partner": True}, "partner-3", TODAY + timedelta(days=1))
    pilot = [f"cust-{n:04d}" for n in range(0, min(customers, 40), 3)] + ["cust-unknown"]
    b.add(b.stream.bulk, "migration.bulk_requested", {
        "bulk_id": "bulk-partner-5-pilot", "partner_id": "partner-5", "requested_by": "partner-5-portal",
        "product_ids": products, "customer_ids": pilot}, "partner-5", TODAY + timedelta(days=1))
    for days in LATER_DAYS:
        b.add(b.stream.later, "clock.tick", {}, "clock", TODAY + timedelta(days=days))
        if days == 60:
            b.add(b.stream.later, "migration.bulk_cancelled", {
                "bulk_id": "bulk-partner-5-pilot", "requested_by": "partner-5-portal",
                "reason": "pilot ends: the rest moves with the renewal"}, "partner-5", TODAY + timedelta(days=days))


def _interleave(messages: list[Message], rnd: random.Random) -> None:
    """Shuffle across keys, keeping each key's messages in generation order (as Kafka keeps them)."""
    queues: dict[str | None, list[Message]] = {}
    for m in messages:
        queues.setdefault(m.key, []).append(m)
    keys = [m.key for m in messages]
    rnd.shuffle(keys)
    messages[:] = [queues[k].pop(0) for k in keys]


def _customer(b: _Builder, cid: str) -> None:
    rnd, ref, orders = b.rnd, b.stream.reference, b.stream.orders
    roll = rnd.random()
    channel, distributor, complete = "direct", None, True
    if roll < 0.25:
        channel, distributor = "two_tier", f"dist-{rnd.randint(1, 4)}"
    elif roll < 0.29:
        channel = "two_tier"  # no distributor: CONFLICTING_RELATIONSHIP
    elif roll < 0.34:
        complete = False
    b.add(ref, "customer.registered", {"customer_id": cid, "partner_id": f"partner-{rnd.randint(1, 12)}",
                                       "name": f"Customer {cid[-4:]} Oy", "channel": channel,
                                       "distributor_id": distributor, "data_complete": complete}, cid,
          TODAY - timedelta(days=500))
    owned = []
    for product in rnd.sample(SECURITY, k=rnd.randint(1, 3)):
        owned.append(product)
        sid = f"{cid}-{product}"
        model = rnd.choices(["annual", "monthly", "usage_based"], weights=[6, 3, 1])[0]
        end = TODAY + timedelta(days=rnd.randint(20, 330))
        start = end - timedelta(days=364)
        b.add(ref, "subscription.purchased", _purchase(sid, cid, product, model, rnd.randint(5, 200), start, end,
              "company_managed" if rnd.random() < 0.08 else "partner_managed", b), cid, start)
    nce = f"{cid}-m365-e3"
    start = TODAY - timedelta(days=rnd.randint(0, 300))
    seats = rnd.randint(2, 60)
    b.add(ref, "subscription.purchased", _purchase(nce, cid, "m365-e3", "annual", seats, start,
          start + timedelta(days=364), "partner_managed", b), cid, start)
    e5 = None
    if rnd.random() < 0.4:
        e5 = f"{cid}-m365-e5"
        b.add(ref, "subscription.purchased", _purchase(e5, cid, "m365-e5", "annual", rnd.randint(1, 20), start,
              start + timedelta(days=364), "partner_managed", b), cid, start)
    if rnd.random() < 0.1:  # upsized on the business date: SAME_DAY_AS_UPSIZE for a transfer today
        seats += 5
        b.add(orders, "subscription.resized", {"subscription_id": nce, "seats": seats}, cid, TODAY)
    if rnd.random() < 0.55:
        asked = rnd.sample(owned + ["elements-edr"], k=min(len(owned) + 1, rnd.randint(1, 3)))
        b.add(orders, "migration.requested", {"request_id": f"mig-{cid}", "customer_id": cid,
                                              "product_ids": list(dict.fromkeys(asked)), "requested_by": "partner-portal"},
              cid, TODAY)
        if rnd.random() < 0.1:
            b.add(orders, "migration.requested", {"request_id": f"mig2-{cid}", "customer_id": cid,
                                                  "product_ids": asked[:1], "requested_by": "partner-portal"}, cid, TODAY)
    if rnd.random() < 0.6:
        _transfer(b, cid, nce, seats, e5)


def _purchase(sid: str, cid: str, product: str, model: str, seats: int, start: date, end: date, management: str,
              b: _Builder) -> dict[str, Any]:
    return {"subscription_id": sid, "customer_id": cid, "product_id": product, "plan_id": f"{product}-{model}",
            "billing_model": model, "management": management, "seats": seats, "term_months": 12,
            "start_date": start.isoformat(), "end_date": end.isoformat(),
            "subscription_key": "-".join(b.uuid().upper().split("-")[:3]), "resource_count": 1}


def _transfer(b: _Builder, cid: str, source: str, seats: int, existing: str | None) -> None:
    rnd, orders = b.rnd, b.stream.orders
    op = f"op-{cid}"
    move = rnd.randint(1, max(1, seats - 1)) if rnd.random() > 0.08 else seats  # sometimes all: INSUFFICIENT_SEATS
    plan = RETIRED_PLAN if rnd.random() < 0.03 else "m365-e5-annual"
    target = ({"kind": "existing_subscription", "subscription_id": existing} if existing and rnd.random() < 0.6 else
              {"kind": "new_subscription", "new_subscription_id": f"{cid}-e5-{rnd.randint(100, 999)}",
               "product_id": "m365-e5", "plan_id": plan, "term_months": 12})
    down = {"operation_id": op, "order_id": f"ord-{b.uuid()[:8]}", "customer_id": cid, "subscription_id": source,
            "seats": move, "requested_by": "ops@distributor.example"}
    up = {"operation_id": op, "order_id": f"ord-{b.uuid()[:8]}", "customer_id": cid,
          "seats": move if rnd.random() > 0.04 else move + 1, "requested_by": "ops@distributor.example", "target": target}
    roll = rnd.random()
    if roll < 0.02:  # an orphan: the upgrade never comes
        b.add(orders, "transfer.downgrade_ordered", down, cid, TODAY)
        return
    if roll < 0.05:  # cancelled before any half arrives
        b.add(orders, "transfer.cancel_requested", {"operation_id": op, "requested_by": "ops@distributor.example",
                                                    "reason": "customer withdrew the request"}, cid, TODAY)
    halves = [("transfer.downgrade_ordered", down), ("transfer.upgrade_ordered", up)]
    if rnd.random() < 0.5:
        halves.reverse()
    for type_, payload in halves:
        # Some upgrades arrive keyed by order id: another partition than the downgrade.
        key = payload["order_id"] if type_ == "transfer.upgrade_ordered" and rnd.random() < 0.2 else cid
        b.add(orders, type_, payload, key, TODAY)
    if rnd.random() < 0.04:  # too late: the pair went to the vendor already
        b.add(orders, "transfer.cancel_requested", {"operation_id": op, "requested_by": "ops@distributor.example",
                                                    "reason": "changed mind"}, cid, TODAY)


def _malformed(b: _Builder) -> None:
    orders = b.stream.orders
    orders.append(Message("junk", b"\x00\x01 definitely not json"))
    orders.append(Message("junk", b'["an", "array"]'))
    naive = {"message_id": b.uuid(), "type": "subscription.resized", "schema_version": 1,
             "occurred_at": "2026-11-02T10:00:00", "source": "legacy", "payload": {}}
    orders.append(Message("junk", json.dumps(naive).encode()))
    b.add(orders, "subscription.teleported", {"subscription_id": "x"}, "junk", TODAY)
    v2 = b.add([], "subscription.resized", {"subscription_id": "x", "seats": 1}, "junk", TODAY)
    orders.append(Message("junk", json.dumps({**v2, "schema_version": 2}).encode()))
    b.add(orders, "subscription.resized", {"subscription_id": "cust-0000-m365-e3", "seats": 0}, "cust-0000", TODAY)
    b.add(orders, "subscription.purchased", _purchase("ghost-sub", "ghost-customer", "elements-epp", "annual", 5,
          TODAY, TODAY + timedelta(days=364), "partner_managed", b), "ghost-customer", TODAY)
