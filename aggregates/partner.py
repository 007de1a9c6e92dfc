"""Which customers a partner has: what `all_customers_of_partner` in a bulk migration means."""

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class Partner(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(partner_id: str, **_: Any) -> UUID:
        return aggregate_id("partners", partner_id)

    @event("Started")
    def __init__(self, partner_id: str) -> None:
        self.partner_id = partner_id
        # An ordered dict, not a list: membership is checked on every registration, and a
        # snapshot must hold JSON (no sets).
        self.customers: dict[str, None] = {}

    @property
    def customer_ids(self) -> list[str]:
        return list(self.customers)

    def add(self, customer_id: str, message_id: str) -> None:
        if customer_id not in self.customers:
            self._added(customer_id=customer_id, message_id=message_id)

    def remove(self, customer_id: str, message_id: str) -> None:
        if customer_id in self.customers:
            self._removed(customer_id=customer_id, message_id=message_id)

    @event("CustomerAdded")
    def _added(self, customer_id: str, message_id: str) -> None:
        self.customers[customer_id] = None

    @event("CustomerRemoved")
    def _removed(self, customer_id: str, message_id: str) -> None:
        del self.customers[customer_id]
