"""A bulk migration as a partner reads it: per customer and product, the outcome, its code,
its date and the subscription keys; as a JSON view and as CSV (`coterm export --bulk`)."""

import csv
import io
from collections.abc import Iterator
from typing import Any

from aggregates.bulk import Bulk
from projections.plain_events import aggregate_events
from projections.projector import Rows, project

CSV_COLUMNS = ("bulk_id", "customer_id", "product_id", "outcome", "reason_code", "date", "request_id",
               "subscription_ids", "subscription_keys", "detail")


def bulk_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The read-model document with its customers as a list, in the order the bulk decided them."""
    customers = doc["customers"]
    order = list(doc.get("customer_order") or []) + sorted(set(customers) - set(doc.get("customer_order") or []))
    view = {k: v for k, v in doc.items() if k not in ("customers", "customer_order")}
    rank = {p: i for i, p in enumerate(doc.get("product_ids") or [])}  # products in the order requested
    view["customers"] = [
        {"customer_id": c, "products": [{"product_id": p, **o} for p, o in
                                        sorted(customers.get(c, {}).items(), key=lambda po: rank.get(po[0], len(rank)))]}
        for c in order
    ]
    return view


def bulk_rows(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for customer in bulk_view(doc)["customers"]:
        for product in customer["products"]:
            subscriptions = product.get("subscriptions") or []
            yield {"bulk_id": doc["bulk_id"], "customer_id": customer["customer_id"],
                   "product_id": product["product_id"], "outcome": product["outcome"],
                   "reason_code": product.get("reason_code") or "", "date": product["on"],
                   "request_id": product.get("request_id") or "",
                   "subscription_ids": " ".join(s["subscription_id"] for s in subscriptions),
                   "subscription_keys": " ".join(s["subscription_key"] for s in subscriptions),
                   "detail": product.get("detail") or ""}


def bulk_csv(doc: dict[str, Any]) -> str:
    """`date`: when it was decided, or for a scheduled (or cancelled) product the day it waits for."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(bulk_rows(doc))
    return out.getvalue()


def bulk_doc_from_store(app: Any, bulk_id: str) -> dict[str, Any] | None:
    """The bulk's read-model document built straight from its events (the store is the truth; no
    read model needs to be current): what `coterm export --bulk` reports."""
    aggregate_id = Bulk.create_id(bulk_id)
    rows = Rows(lambda table, row_id: None)
    for event in aggregate_events(app, aggregate_id):
        project(rows, event, event.originator_version)
    return rows.get("bulks", aggregate_id.hex)
