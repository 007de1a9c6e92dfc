"""One migration request and the per-product decision that answered it."""

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class Migration(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(request_id: str, **_: Any) -> UUID:
        return aggregate_id("migrations", request_id)

    @event("Requested")
    def __init__(self, request_id: str, customer_id: str) -> None:
        self.request_id = request_id
        self.customer_id = customer_id
        self.decisions: list[dict[str, Any]] = []

    @event("Decided")
    def decide(
        self,
        request_id: str,
        customer_id: str,
        product_ids: list[str],
        requested_by: str,
        on: date,
        migrated: list[dict[str, Any]],
        bundle: list[dict[str, Any]],
        rejected: list[dict[str, Any]],
        message_id: str,
    ) -> None:
        """Each request message gets a decision; a repeated request_id is decided again (usually ALREADY_MIGRATED)."""
        self.decisions.append({"on": on, "migrated": migrated, "bundle": bundle, "rejected": rejected})
