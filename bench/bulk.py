"""A bulk migration through the real inbox: how long the first decisions of N customers take
(one message, one transaction), and the business days that decide what was scheduled. Printed,
never asserted in tests.

  python -m bench.bulk [--customers N] [--store PATH_OR_URL]

Each customer holds one annual subscription whose renewal window opens between 60 days
before the bulk and 59 days after it: about half migrate at once, half are scheduled over 59
days. Then one tick a day for 60 days, and the figures.
"""

import argparse
import io
import json
import tempfile
import time
import tracemalloc
import uuid
from collections import namedtuple
from datetime import date, timedelta
from typing import Any

from aggregates.bulk import Bulk
from processor.consume.inbox import Inbox
from processor.log_setup import configure_logging
from processor.store.opening import open_store

Record = namedtuple("Record", "offset value")
BULK_DAY = date(2026, 11, 2)


def message(type_: str, payload: dict[str, Any], day: date) -> bytes:
    return json.dumps({"message_id": str(uuid.uuid4()), "type": type_, "schema_version": 1,
                       "occurred_at": f"{day.isoformat()}T09:00:00Z", "source": "bench", "payload": payload}).encode()


def reference(customers: int) -> list[bytes]:
    out = [message("catalog.product_defined", {"product_id": "epp", "name": "EPP", "supports_usage_based": True,
                                               "in_usage_bundle": True}, date(2025, 1, 1))]
    for i in range(customers):
        c, end = f"b{i:06d}", BULK_DAY + timedelta(days=30 + i % 120)
        out.append(message("customer.registered", {"customer_id": c, "partner_id": "bench", "name": c,
                                                   "channel": "direct", "distributor_id": None,
                                                   "data_complete": True}, date(2025, 6, 1)))
        out.append(message("subscription.purchased", {
            "subscription_id": f"{c}-s", "customer_id": c, "product_id": "epp", "plan_id": "plan-epp",
            "billing_model": "annual", "management": "partner_managed", "seats": 5, "term_months": 12,
            "start_date": (end - timedelta(days=364)).isoformat(), "end_date": end.isoformat(),
            "subscription_key": f"K-{c}"}, date(2025, 6, 1)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--store", help="default: a fresh SQLite file")
    args = parser.parse_args()
    configure_logging(io.StringIO())
    with tempfile.TemporaryDirectory() as tmp:
        app = open_store(args.store or f"{tmp}/bulk.sqlite")
        inbox = Inbox(app)
        ref = reference(args.customers)
        for i in range(0, len(ref), 500):
            inbox.process("orders", 0, [Record(i + n, v) for n, v in enumerate(ref[i : i + 500])])
        offset = len(ref)
        before = app.process_recorder.max_notification_id() or 0
        bulk = message("migration.bulk_requested", {"bulk_id": "bench", "partner_id": "bench", "requested_by": "bench",
                                                    "product_ids": ["epp"], "all_customers_of_partner": True}, BULK_DAY)
        tracemalloc.start()
        started = time.perf_counter()
        inbox.process("orders", 1, [Record(0, bulk)])
        first_s = time.perf_counter() - started
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        first_events = (app.process_recorder.max_notification_id() or 0) - before
        state = app.repository.get(Bulk.create_id("bench"))
        scheduled = len(state.scheduled())
        started = time.perf_counter()
        for day in range(1, 61):
            inbox.process("orders", 2, [Record(offset + day, message("clock.tick", {}, BULK_DAY + timedelta(days=day)))])
        days_s = time.perf_counter() - started
        state = app.repository.get(Bulk.create_id("bench"))
        app.close()
    print("| figure | value |\n| --- | ---: |")
    print(f"| customers in the bulk | {args.customers:,} |")
    print(f"| first decisions: seconds (one message, one transaction) | {first_s:.2f} |")
    print(f"| first decisions: customers/s | {args.customers / first_s:,.0f} |")
    print(f"| first decisions: events recorded | {first_events:,} |")
    print(f"| first decisions: Python memory peak, MB | {peak_mb:.0f} |")
    print(f"| products scheduled | {scheduled:,} |")
    print(f"| 60 business days (ticks) deciding them: seconds | {days_s:.2f} |")
    print(f"| scheduled decisions/s | {scheduled / days_s:,.0f} |")
    print(f"| bulk status at the end | {state.status} {state.counts()} |")


if __name__ == "__main__":
    main()
