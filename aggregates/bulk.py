"""A partner's bulk migration (CONTRACT.md section 5): which customers and products it covers,
how each was decided, and which products wait for their renewal window."""

from datetime import date
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from aggregates.ids import NAMESPACE, aggregate_id

# Outcomes of one (customer, product) of a bulk; "scheduled" is the only one not final.
MIGRATED, REJECTED, SCHEDULED, CANCELLED = "migrated", "rejected", "scheduled", "cancelled"


def bulk_request_id(bulk_id: str, customer_id: str, on: date | None = None) -> str:
    """The request id of a customer's decision within a bulk: UUIDv5 of (bulk_id, customer_id),
    and of (bulk_id, customer_id, date) for a scheduled one, in coterm's id namespace."""
    parts = ["bulk", bulk_id, customer_id] + ([on.isoformat()] if on else [])
    return str(uuid5(NAMESPACE, "/" + "/".join(parts)))


# customer_id -> product_id -> {"outcome", "reason_code", "detail", "on", "request_id"}: the
# aggregate holds it, and the read model holds the same, built by the same functions below.
Outcomes = dict[str, dict[str, dict[str, Any]]]


def apply_decisions(outcomes: Outcomes, decisions: list[dict[str, Any]]) -> None:
    """decision: {customer_id, request_id, products: {product_id: {outcome, reason_code, detail, on}}}"""
    for decision in decisions:
        mine = outcomes.setdefault(decision["customer_id"], {})
        for product_id, outcome in decision["products"].items():
            mine[product_id] = {**outcome, "request_id": decision["request_id"]}


def cancel_scheduled(outcomes: Outcomes, requested_by: str, reason: str) -> None:
    """A cancelled bulk decides nothing more: every product still scheduled is cancelled (keeping
    the date it waited for and the request that scheduled it)."""
    for products in outcomes.values():
        for product_id, outcome in products.items():
            if outcome["outcome"] == SCHEDULED:
                products[product_id] = {**outcome, "outcome": CANCELLED,
                                        "detail": f"cancelled by {requested_by}: {reason}"}


def count_outcomes(outcomes: Outcomes) -> dict[str, int]:
    counts = {MIGRATED: 0, REJECTED: 0, SCHEDULED: 0, CANCELLED: 0}
    for products in outcomes.values():
        for outcome in products.values():
            counts[outcome["outcome"]] += 1
    return counts


class Bulk(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(bulk_id: str, **_: Any) -> UUID:
        return aggregate_id("bulks", bulk_id)

    @event("Requested")
    def __init__(self, bulk_id: str, request: dict[str, Any], on: date, message_id: str) -> None:
        self.bulk_id = bulk_id
        self.request = request  # the payload's fingerprint: a reuse of bulk_id must repeat it
        self.on = on
        self.status = "requested"  # -> deciding (something scheduled) -> finished | cancelled
        self.customers: list[str] = []
        self.outcomes: Outcomes = {}
        self.due: dict[str, dict[str, list[str]]] = {}  # ISO date -> customer_id -> product_ids

    @property
    def requested_by(self) -> str:
        return str(self.request["requested_by"])

    @property
    def product_ids(self) -> list[str]:
        return list(self.request["product_ids"])

    @property
    def open(self) -> bool:
        return self.status in ("requested", "deciding")

    def next_due(self) -> date | None:
        return date.fromisoformat(min(self.due)) if self.due else None

    def request_ids(self, customer_id: str) -> set[str]:
        """Every request this bulk made or will make for the customer: a bundle one of them
        created is joined, not refused ALREADY_MIGRATED."""
        ids = {bulk_request_id(self.bulk_id, customer_id)}
        for outcome in self.outcomes.get(customer_id, {}).values():
            if outcome.get("request_id"):
                ids.add(outcome["request_id"])
        for day, customers in self.due.items():
            if customer_id in customers:
                ids.add(bulk_request_id(self.bulk_id, customer_id, date.fromisoformat(day)))
        return ids

    @event("Accepted")
    def accept(self, bulk_id: str, customers: list[str], decisions: list[dict[str, Any]], message_id: str) -> None:
        """The first decisions, one per customer, at the bulk's own date."""
        self.customers = list(customers)
        self._apply(decisions)

    @event("ScheduledDecided")
    def decide_scheduled(self, on: date, decisions: list[dict[str, Any]], message_id: str) -> None:
        """The products due on `on`, decided again once the business date reached it."""
        self.due.pop(on.isoformat(), None)
        self._apply(decisions)

    def _apply(self, decisions: list[dict[str, Any]]) -> None:
        apply_decisions(self.outcomes, decisions)
        for decision in decisions:
            for product_id, outcome in decision["products"].items():
                if outcome["outcome"] == SCHEDULED:
                    self.due.setdefault(outcome["on"], {}).setdefault(decision["customer_id"], []).append(product_id)
        self.status = "deciding" if self.due else self.status

    @event("Cancelled")
    def cancel(self, requested_by: str, reason: str, message_id: str) -> None:
        cancel_scheduled(self.outcomes, requested_by, reason)
        self.due = {}
        self.status = "cancelled"

    @event("CancelRefused")
    def refuse_cancel(self, requested_by: str, reason: str, why: str, message_id: str) -> None:
        """A cancel that came after the bulk ended: recorded, so no message is dropped silently."""

    @event("Finished")
    def finish(self, bulk_id: str, status: str, counts: dict[str, int], message_id: str) -> None:
        """Nothing is left scheduled, or the bulk was cancelled (`status`)."""
        self.status = status

    def counts(self) -> dict[str, int]:
        """Final outcomes, as `migration.bulk_finished` reports them."""
        return {kind: n for kind, n in count_outcomes(self.outcomes).items() if kind != SCHEDULED}

    def scheduled(self) -> list[dict[str, Any]]:
        return [{"customer_id": c, "product_id": p, "on": day}
                for day in sorted(self.due) for c, products in self.due[day].items() for p in products]
