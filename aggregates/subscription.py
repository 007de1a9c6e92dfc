"""One vendor subscription: plan, billing model, seats and the dates the rules look at."""

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class Subscription(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(subscription_id: str, **_: Any) -> UUID:
        return aggregate_id("subscriptions", subscription_id)

    @event("Purchased")
    def __init__(
        self,
        subscription_id: str,
        customer_id: str,
        product_id: str,
        plan_id: str,
        billing_model: str,
        management: str,
        seats: int,
        term_months: int,
        start_date: date,
        end_date: date,
        subscription_key: str,
        resource_count: int,
        purchased_on: date,
        billing_start_date: date,
        origin: str,
        message_id: str,
    ) -> None:
        self.subscription_id = subscription_id
        self.customer_id = customer_id
        self.product_id = product_id
        self.plan_id = plan_id
        self.billing_model = billing_model
        self.management = management
        self.seats = seats
        self.term_months = term_months
        self.start_date = start_date
        self.end_date = end_date
        self.subscription_key = subscription_key
        self.resource_count = resource_count
        self.purchased_on = purchased_on
        self.billing_start_date = billing_start_date
        self.origin = origin  # "purchase", or "transfer:<operation_id>" for a co-termed target
        self.upsized_on: list[date] = []

    def is_active(self, on: date) -> bool:
        return self.start_date <= on <= self.end_date

    def resize(self, seats: int, on: date, message_id: str) -> None:
        if seats != self.seats:
            self._resized(seats=seats, previous_seats=self.seats, on=on, message_id=message_id)

    @event("Resized")
    def _resized(self, seats: int, previous_seats: int, on: date, message_id: str) -> None:
        self.seats = seats
        if seats > previous_seats:
            self.upsized_on.append(on)

    @event("MigratedToUsageBased")
    def migrate_to_usage_based(self, request_id: str, previous_billing_model: str, message_id: str) -> None:
        self.billing_model = "usage_based"  # the key stays the same: nothing to reconfigure

    @event("SeatsTransferredOut")
    def transfer_out(self, operation_id: str, seats: int, message_id: str) -> None:
        self.seats -= seats

    @event("SeatsTransferredIn")
    def transfer_in(self, operation_id: str, seats: int, message_id: str) -> None:
        self.seats += seats
