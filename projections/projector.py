"""Stored events -> read-model documents. Pure: the same events always give the same rows.

The events are as `projections.plain_events` decodes them: dates and times are the ISO text
they are stored as, which is what a document shows, so nothing is parsed only to be printed."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from aggregates.bulk import (
    SCHEDULED,
    Bulk,
    apply_decisions,
    cancel_scheduled,
    count_outcomes,
)
from aggregates.customer import Customer, joined_bundle
from aggregates.inbox import DeadLetter
from aggregates.migration import Migration
from aggregates.subscription import Subscription
from aggregates.transfer import CLOSED, Transfer
from projections.subscription_rows import SUBSCRIPTION_CHANGES, project_subscription

Doc = dict[str, Any]


class Rows:
    """The rows one batch touches: loaded once, changed in memory, written together."""

    def __init__(self, load: Callable[[str, str], Doc | None]) -> None:
        self._load = load
        self.changed: dict[str, dict[str, dict[str, Any]]] = {}
        self._cache: dict[tuple[str, str], Doc | None] = {}

    def preload(self, table: str, row_ids: list[str], docs: dict[str, Doc]) -> None:
        """Rows read together beforehand (`Projection`); ids absent from `docs` have no row yet."""
        for row_id in row_ids:
            self._cache.setdefault((table, row_id), docs.get(row_id))

    def get(self, table: str, row_id: str) -> Doc | None:
        key = (table, row_id)
        if key not in self._cache:
            self._cache[key] = self._load(table, row_id)
        return self._cache[key]

    def put(self, table: str, row_id: str, doc: Doc, **columns: Any) -> None:
        self._cache[(table, row_id)] = doc
        self.changed.setdefault(table, {})[row_id] = {"doc": doc, **columns}

    def take(self, row_id: str) -> "Rows":
        """The rows with this id, moved out into new `Rows` (`projections.rebuild`)."""
        taken = Rows(self._load)
        for table, changes in self.changed.items():
            if row_id in changes:
                taken.changed.setdefault(table, {})[row_id] = changes.pop(row_id)
                taken._cache[(table, row_id)] = self._cache.pop((table, row_id))
        return taken


def _at(event: Any) -> str:
    return event.timestamp  # type: ignore[no-any-return]


def _ms_between(a: str, b: str) -> int:
    return abs(int((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() * 1000))


# -- operations (transfers) ---------------------------------------------------------------------
def _put_operation(rows: Rows, event: Any, doc: Doc) -> None:
    doc["updated_at"] = _at(event)
    rows.put("operations", event.row_id, doc, operation_id=doc["operation_id"], customer_id=doc["customer_id"],
             status=doc["status"], reason_code=doc.get("reason_code"), seq=doc["seq"], first_at=doc["created_at"],
             updated_at=doc["updated_at"], pairing_latency_ms=doc.get("pairing_latency_ms"),
             vendor_latency_ms=doc.get("vendor_latency_ms"))


def _operation(rows: Rows, event: Any, position: int) -> None:
    row_id = event.row_id
    if isinstance(event, Transfer.Opened):
        doc: Doc = {"operation_id": event.operation_id, "status": "waiting_for_pair", "customer_id": None,
                    "halves": {}, "seats": None, "source_subscription_id": None, "target": None,
                    "reason_code": None, "detail": None, "facts": {}, "vendor_reference": None, "attempts": 0,
                    "vendor_rounds": 0, "retryable": False, "created_at": _at(event), "seq": position,
                    "refusals": [], "actions": [], "pairing_latency_ms": None, "vendor_latency_ms": None}
        if event.half is not None:  # v2: opened by its first half
            _half(doc, event)
        if event.call is not None:  # v3: the other half came in the same batch, and the call with it
            _requested(doc, SimpleNamespace(**event.call, timestamp=event.timestamp))
        _put_operation(rows, event, doc)
        return
    doc = rows.get("operations", row_id)
    if doc is None:
        return  # history begins mid-aggregate (cannot happen when replaying from the first event)
    PROJECT_TRANSFER[type(event)](doc, event)
    _put_operation(rows, event, doc)


def _half(doc: Doc, e: Any) -> None:
    half = e.half  # `Half.stored()` values; the stamps default to "" as in `aggregates.halves`
    doc["halves"][e.side] = {"order_id": half["order_id"], "message_id": half.get("message_id", ""),
                             "occurred_at": half.get("occurred_at", ""), "recorded_at": half.get("recorded_at", ""),
                             "seats": half["seats"], "customer_id": half["customer_id"],
                             "requested_by": half["requested_by"]}
    doc["customer_id"] = doc["customer_id"] or half["customer_id"]
    doc["seats"] = doc["seats"] or half["seats"]
    if e.side == "downgrade":
        doc["source_subscription_id"] = half["subscription_id"]
    else:
        doc["target"] = half["target"]  # as stored: the operation's page shows what was ordered
    if len(doc["halves"]) == 2:
        down, up = doc["halves"]["downgrade"], doc["halves"]["upgrade"]
        doc["pairing_latency_ms"] = _ms_between(down["recorded_at"], up["recorded_at"])


def _refused(doc: Doc, e: Any) -> None:
    doc["refusals"].append({"reason_code": e.reason_code, "detail": e.detail, "order_id": e.order_id,
                            "message_id": e.message_id, "at": _at(e)})


def _rejected(doc: Doc, e: Any) -> None:
    doc.update(status="rejected", reason_code=e.reason_code, detail=e.detail, facts=e.facts)


def _requested(doc: Doc, e: Any) -> None:
    if e.half is not None:  # v4: the half that completed the pair came with the call (issue 29)
        _half(doc, e)
    doc.update(status="paired", reason_code=None, detail=None, retryable=False, vendor_request=e.request)
    doc["vendor_rounds"] += 1
    if e.reason != "paired":
        doc["actions"].append({"action": "retry", "by": e.requested_by, "why": e.reason, "at": _at(e),
                               "action_id": e.message_id})


def _sent(doc: Doc, e: Any) -> None:
    doc["status"] = "sent"
    if e.request is not None:  # v2: the body as sent, seats as confirmed when its turn came
        doc["vendor_request"] = e.request


def _completed(doc: Doc, e: Any) -> None:
    doc.update(status="completed", vendor_reference=e.vendor_reference, vendor_latency_ms=e.vendor_latency_ms,
               target_subscription_id=e.target_subscription_id)
    doc["attempts"] += e.attempts


def _failed(doc: Doc, e: Any) -> None:
    doc.update(status="failed", reason_code=e.reason_code, detail=e.detail, retryable=e.retryable)
    doc["attempts"] += e.attempts


def _expired(doc: Doc, e: Any) -> None:
    doc.update(status="expired", reason_code="PAIRING_TIMEOUT", detail=e.detail)


def _cancelled(doc: Doc, e: Any) -> None:
    doc.update(status="cancelled", retryable=False, cancelled_by=e.requested_by, cancel_reason=e.reason)
    doc["actions"].append({"action": "cancel", "by": e.requested_by, "why": e.reason, "at": _at(e),
                           "action_id": e.message_id})


PROJECT_TRANSFER: dict[type, Callable[[Doc, Any], None]] = {
    Transfer.HalfReceived: _half, Transfer.MessageRefused: _refused, Transfer.Rejected: _rejected,
    Transfer.VendorCallRequested: _requested, Transfer.VendorCallSent: _sent, Transfer.Completed: _completed,
    Transfer.Failed: _failed, Transfer.Expired: _expired, Transfer.Cancelled: _cancelled,
}
assert not CLOSED - {"completed", "rejected", "failed", "cancelled", "expired"}


# -- customers, subscriptions, migrations, dead letters ------------------------------------------
def _customer(rows: Rows, e: Any, position: int) -> None:
    row_id = e.row_id
    if isinstance(e, Customer.Registered):
        doc: Doc = {k: getattr(e, k) for k in ("customer_id", "partner_id", "name", "channel", "distributor_id",
                                                 "data_complete")}
        doc.update(subscription_ids=[], bundle=None, migrated_by=None, registered_at=_at(e))
    else:
        doc = rows.get("customers", row_id) or {}
        if not doc:
            return
        if isinstance(e, Customer.Updated):
            doc.update(e.changes)
        elif isinstance(e, Customer.SubscriptionAdded):
            doc["subscription_ids"].append(e.subscription_id)
        elif isinstance(e, Customer.BundleCreated):
            doc.update(bundle=e.bundle, migrated_by=e.request_id)
        elif isinstance(e, Customer.BundleJoined):
            doc["bundle"] = joined_bundle(doc["bundle"] or [], e.entries)
    doc["updated_at"] = _at(e)
    rows.put("customers", row_id, doc, customer_id=doc["customer_id"], partner_id=doc.get("partner_id"),
             distributor_id=doc.get("distributor_id"))


def _migration(rows: Rows, e: Any, position: int) -> None:
    row_id = e.row_id
    if isinstance(e, Migration.Requested):
        doc: Doc = {"request_id": e.request_id, "customer_id": e.customer_id, "decisions": []}
    else:
        doc = rows.get("migrations", row_id) or {}
        if not doc:
            return
        doc["decisions"].append({"on": e.on, "product_ids": e.product_ids, "requested_by": e.requested_by,
                                       "migrated": e.migrated, "bundle": e.bundle, "rejected": e.rejected,
                                       "message_id": e.message_id, "at": _at(e)})
    outcome = None
    if doc["decisions"]:
        outcome = "completed" if doc["decisions"][-1]["migrated"] else "rejected"
    rows.put("migrations", row_id, doc, request_id=doc["request_id"], customer_id=doc["customer_id"], outcome=outcome)


# -- bulk migrations ------------------------------------------------------------------------------
def _bulk(rows: Rows, e: Any, position: int) -> None:
    row_id = e.row_id
    if isinstance(e, Bulk.Requested):
        doc: Doc = {"bulk_id": e.bulk_id, **e.request, "on": e.on, "status": "requested",
                    "requested_at": _at(e), "message_id": e.message_id, "seq": position, "customer_order": [],
                    "customers": {}, "history": [], "next_due": None}
    else:
        doc = rows.get("bulks", row_id) or {}
        if not doc:
            return
    entry: Doc = {"event": type(e).__name__, "at": _at(e), "message_id": e.message_id}
    if isinstance(e, Bulk.Accepted | Bulk.ScheduledDecided):
        if isinstance(e, Bulk.Accepted):
            doc["customer_order"] = list(e.customers)
        else:
            entry["on"] = e.on
        apply_decisions(doc["customers"], e.decisions)
        entry["customers"] = len(e.decisions)
    elif isinstance(e, Bulk.Cancelled):
        cancel_scheduled(doc["customers"], e.requested_by, e.reason)
        doc.update(status="cancelled", cancelled_by=e.requested_by, cancel_reason=e.reason)
        entry.update(by=e.requested_by, reason=e.reason)
    elif isinstance(e, Bulk.CancelRefused):
        entry.update(by=e.requested_by, reason=e.reason, why=e.why)
    elif isinstance(e, Bulk.Finished):
        doc["status"] = e.status
        entry["counts"] = dict(e.counts)
    if isinstance(e, Bulk.Accepted | Bulk.ScheduledDecided):
        doc["status"] = "deciding"
    doc["history"].append(entry)
    doc["counts"] = count_outcomes(doc["customers"])
    due = sorted(o["on"] for ps in doc["customers"].values() for o in ps.values() if o["outcome"] == SCHEDULED)
    doc["next_due"] = due[0] if due else None
    doc["updated_at"] = _at(e)
    rows.put("bulks", row_id, doc, bulk_id=doc["bulk_id"], partner_id=doc["partner_id"], status=doc["status"],
             seq=doc["seq"])


def _dead_letter(rows: Rows, e: Any, position: int) -> None:
    if isinstance(e, DeadLetter.Redriven):
        found = rows.get("deadletters", e.row_id)
        if found is not None:
            found["redriven"] = {"by": e.by, "why": e.why, "new_message_id": e.new_message_id,
                                 "corrected": e.corrected, "at": _at(e)}
            rows.put("deadletters", e.row_id, found, reason=found["reason"], seq=found.get("seq", position))
        return
    doc = {"reason": e.reason, "error": e.error, "topic": e.topic, "partition": e.partition, "offset": e.offset,
           "message_id": e.message_id, "type": e.type, "at": _at(e), "id": e.row_id, "seq": position,
           "redriven": None}
    rows.put("deadletters", e.row_id, doc, reason=e.reason, seq=position)


BULK_EVENTS = (Bulk.Requested, Bulk.Accepted, Bulk.ScheduledDecided, Bulk.Cancelled, Bulk.CancelRefused, Bulk.Finished)


@dataclass(frozen=True)
class Handler:
    """One projection handler, the table its rows live in, and the events it takes: those that
    create a row, and those that change one (whose rows a batch reads together beforehand)."""

    project: Callable[[Rows, Any, int], None]
    table: str
    creates: tuple[type, ...]
    changes: tuple[type, ...]


HANDLERS = [
    Handler(_operation, "operations", (), (Transfer.Opened, *PROJECT_TRANSFER)),
    Handler(_customer, "customers", (Customer.Registered,),
            (Customer.Updated, Customer.SubscriptionAdded, Customer.BundleCreated, Customer.BundleJoined)),
    Handler(_bulk, "bulks", BULK_EVENTS[:1], BULK_EVENTS[1:]),
    Handler(project_subscription, "subscriptions", (Subscription.Purchased,), SUBSCRIPTION_CHANGES),
    Handler(_migration, "migrations", (Migration.Requested,), (Migration.Decided,)),
    Handler(_dead_letter, "deadletters", (DeadLetter.Recorded,), (DeadLetter.Redriven,)),
]
PROJECTORS: dict[type, Callable[[Rows, Any, int], None]] = {
    cls: h.project for h in HANDLERS for cls in (*h.creates, *h.changes)}
# Which table each changing event's row lives in, so a batch can read its rows together.
TABLE_OF: dict[type, str] = {cls: h.table for h in HANDLERS for cls in h.changes}


def project(rows: Rows, event: Any, position: int) -> None:
    handler = PROJECTORS.get(type(event))
    if handler is not None:
        handler(rows, event, position)
