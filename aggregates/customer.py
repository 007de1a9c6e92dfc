"""A partner's customer: channel relationship, data quality, subscriptions, usage bundle."""

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id

UPDATABLE = ("partner_id", "name", "channel", "distributor_id", "data_complete")


class Customer(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(customer_id: str, **_: Any) -> UUID:
        return aggregate_id("customers", customer_id)

    @event("Registered")
    def __init__(
        self,
        customer_id: str,
        partner_id: str,
        name: str,
        channel: str,
        distributor_id: str | None,
        data_complete: bool,
        message_id: str,
    ) -> None:
        self.customer_id = customer_id
        self.partner_id = partner_id
        self.name = name
        self.channel = channel
        self.distributor_id = distributor_id
        self.data_complete = data_complete
        self.subscription_ids: list[str] = []
        self.bundle: list[dict[str, str]] | None = None
        self.migrated_by: str | None = None

    def update(self, changes: dict[str, Any], message_id: str) -> None:
        changed = {k: v for k, v in changes.items() if k in UPDATABLE and getattr(self, k) != v}
        if changed:
            self._updated(changes=changed, message_id=message_id)

    @event("Updated")
    def _updated(self, changes: dict[str, Any], message_id: str) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    def add_subscription(self, subscription_id: str, message_id: str) -> None:
        if subscription_id not in self.subscription_ids:
            self.trigger_event(self.SubscriptionAdded, subscription_id=subscription_id, message_id=message_id)

    @event("SubscriptionAdded")
    def _subscription_added(self, subscription_id: str, message_id: str) -> None:
        self.subscription_ids.append(subscription_id)

    @event("BundleCreated")
    def create_bundle(self, request_id: str, bundle: list[dict[str, str]], message_id: str) -> None:
        self.bundle = bundle
        self.migrated_by = request_id

    @event("BundleJoined")
    def join_bundle(self, request_id: str, entries: list[dict[str, str]], message_id: str) -> None:
        """Products a later decision of the same bulk migration accepted join its bundle."""
        assert self.bundle is not None
        self.bundle = joined_bundle(self.bundle, entries)

    @property
    def relationship_conflict(self) -> str | None:
        if self.channel == "two_tier" and not self.distributor_id:
            return "channel two_tier without a distributor_id"
        if self.channel == "direct" and self.distributor_id:
            return f"channel direct with distributor_id {self.distributor_id}"
        return None


def joined_bundle(bundle: list[dict[str, str]], entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """A bundle with products joining it: one subscription per product, the joining one's kept
    key replacing a new key given earlier (stores written before contract 1.2)."""
    joining = {entry["product_id"] for entry in entries}
    return [*(entry for entry in bundle if entry["product_id"] not in joining), *entries]
