"""The subscriptions read model: seats, transfers in line, the renewal window and seat drift."""

from datetime import date
from typing import TYPE_CHECKING, Any

from aggregates.migration_rules import window_opens
from aggregates.subscription import Subscription

if TYPE_CHECKING:
    from projections.projector import Rows

Doc = dict[str, Any]
SUBSCRIPTION_CHANGES = (
    Subscription.Resized, Subscription.MigratedToUsageBased, Subscription.SeatsTransferredOut,
    Subscription.SeatsTransferredIn, Subscription.TransferHeld, Subscription.TransferReleased,
    Subscription.DriftFound, Subscription.DriftCleared, Subscription.DriftExplained, Subscription.DriftResolved)


def _window_opens(doc: Doc) -> str | None:
    if doc["billing_model"] != "annual":
        return None  # monthly is never fixed-term; usage-based has no renewal
    return window_opens(date.fromisoformat(doc["end_date"])).isoformat()  # the domain's rule, not a copy


def project_subscription(rows: "Rows", e: Any, position: int) -> None:
    row_id = e.row_id
    if isinstance(e, Subscription.Purchased):
        doc: Doc = {k: getattr(e, k) for k in (
            "subscription_id", "customer_id", "product_id", "plan_id", "billing_model", "management", "seats",
            "term_months", "start_date", "end_date", "subscription_key", "resource_count", "purchased_on",
            "billing_start_date", "origin")}
        doc["upsized_on"] = []
        doc["in_flight"] = []  # transfers decided and not yet answered for good, in decision order
    else:
        doc = rows.get("subscriptions", row_id) or {}
        if not doc:
            return
        if isinstance(e, Subscription.Resized):
            doc["seats"] = e.seats
            if e.seats > e.previous_seats:
                doc["upsized_on"].append(e.on)
        elif isinstance(e, Subscription.MigratedToUsageBased):
            doc.update(billing_model="usage_based", migrated_by=e.request_id)
        elif isinstance(e, Subscription.SeatsTransferredOut):
            doc["seats"] -= e.seats
            _leaves_line(doc, e.operation_id)
        elif isinstance(e, Subscription.SeatsTransferredIn):
            doc["seats"] += e.seats
            _leaves_line(doc, e.operation_id)
        elif isinstance(e, Subscription.TransferHeld):
            doc.setdefault("in_flight", []).append({"operation_id": e.operation_id, "seats_out": e.seats_out})
        elif isinstance(e, Subscription.TransferReleased):
            _leaves_line(doc, e.operation_id)
        else:
            _drift(doc, e)
    if isinstance(e, Subscription.Purchased | Subscription.MigratedToUsageBased) or "renewal_window_opens" not in doc:
        doc["renewal_window_opens"] = _window_opens(doc)  # nothing else changes its plan's terms
    rows.put("subscriptions", row_id, doc, subscription_id=doc["subscription_id"], customer_id=doc["customer_id"],
             plan_id=doc["plan_id"], product_id=doc["product_id"], billing_model=doc["billing_model"], seats=doc["seats"],
             drift_status=doc.get("drift_status"), drift_found_at=doc.get("drift", {}).get("found_at"))


def _drift(doc: Doc, e: Any) -> None:
    """Seat drift as the aggregate keeps it (`Subscription.drift`), with `drift_status` beside it
    for the lists and counts; the history of every drift is the subscription's events."""
    if isinstance(e, Subscription.DriftFound):
        doc["drift"] = {"status": "open", "coterm_seats": e.coterm_seats, "vendor_seats": e.vendor_seats,
                        "found_at": e.found_at, "found_by": e.found_by}
    elif isinstance(e, Subscription.DriftCleared):
        doc["drift"] = {**doc["drift"], "status": "cleared", "cleared_at": e.found_at, "cleared_by": e.found_by}
    elif isinstance(e, Subscription.DriftExplained):
        doc["drift"] = {**doc["drift"], "status": "explained", "by": e.by, "why": e.why, "at": e.timestamp}
    elif isinstance(e, Subscription.DriftResolved):
        doc["seats"] = e.seats
        doc["drift"] = {**doc["drift"], "status": "resolved", "by": e.by, "why": e.why, "at": e.timestamp}
    doc["drift_status"] = doc["drift"]["status"]


def _leaves_line(doc: Doc, operation_id: str) -> None:
    doc["in_flight"] = [t for t in doc.get("in_flight", []) if t["operation_id"] != operation_id]
