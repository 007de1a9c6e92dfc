"""Payload models for every inbound `type` (CONTRACT.md section 2)."""

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from contracts.fields import MAX_COUNT, Flag, Id, IsoDate, PositiveCount, Text


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class ProductDefined(Payload):
    product_id: Id
    name: Text
    supports_usage_based: Flag
    in_usage_bundle: Flag


class CustomerRegistered(Payload):
    customer_id: Id
    partner_id: Id
    name: Text
    channel: Literal["direct", "two_tier"]
    # Consistency with `channel` is a business rule (CONFLICTING_RELATIONSHIP), not validation.
    distributor_id: Id | None = None
    data_complete: Flag


class CustomerUpdated(Payload):
    customer_id: Id
    partner_id: Id | None = None
    name: Text | None = None
    channel: Literal["direct", "two_tier"] | None = None
    distributor_id: Id | None = None
    data_complete: Flag | None = None

    def changes(self) -> dict[str, object]:
        """Only the fields the message actually carried: an explicit null distributor clears it."""
        return {k: getattr(self, k) for k in self.model_fields_set if k != "customer_id"}

    @model_validator(mode="after")
    def _has_changes(self) -> "CustomerUpdated":
        if not self.changes():
            raise ValueError("customer.updated carries no field to change")
        for name in ("partner_id", "name", "channel", "data_complete"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self


class SubscriptionPurchased(Payload):
    subscription_id: Id
    customer_id: Id
    product_id: Id
    plan_id: Id
    billing_model: Literal["annual", "monthly", "usage_based"]
    management: Literal["partner_managed", "company_managed"]
    seats: PositiveCount
    term_months: PositiveCount
    start_date: IsoDate
    end_date: IsoDate
    subscription_key: Id
    # Any count is valid input: a plan with other than one resource is refused at transfer
    # time (MULTI_RESOURCE_PLAN), not dead-lettered here.
    resource_count: Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)] = 1

    @model_validator(mode="after")
    def _dates_in_order(self) -> "SubscriptionPurchased":
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class SubscriptionResized(Payload):
    subscription_id: Id
    seats: PositiveCount


class MigrationRequested(Payload):
    request_id: Id
    customer_id: Id
    product_ids: Annotated[list[Id], Field(min_length=1, max_length=500)]
    requested_by: Id


class DowngradeOrdered(Payload):
    operation_id: Id
    order_id: Id
    customer_id: Id
    subscription_id: Id
    seats: PositiveCount
    requested_by: Id


class NewSubscriptionTarget(Payload):
    kind: Literal["new_subscription"]
    new_subscription_id: Id
    product_id: Id
    plan_id: Id
    term_months: PositiveCount


class ExistingSubscriptionTarget(Payload):
    kind: Literal["existing_subscription"]
    subscription_id: Id


Target = Annotated[Union[NewSubscriptionTarget, ExistingSubscriptionTarget], Field(discriminator="kind")]


class UpgradeOrdered(Payload):
    operation_id: Id
    order_id: Id
    customer_id: Id
    seats: PositiveCount
    requested_by: Id
    target: Target


class CancelRequested(Payload):
    operation_id: Id
    requested_by: Id
    reason: Text


# -- contract 1.1: bulk migration (CONTRACT.md section 5) ---------------------------------------
MAX_BULK_CUSTOMERS = 20_000  # one bulk is decided in one transaction (bench.bulk: ~1,400 customers/s): bounded


class BulkRequested(Payload):
    bulk_id: Id
    partner_id: Id
    requested_by: Id
    product_ids: Annotated[list[Id], Field(min_length=1, max_length=500)]
    customer_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_BULK_CUSTOMERS)] | None = None
    all_customers_of_partner: Flag | None = None

    @model_validator(mode="after")
    def _one_way_to_name_customers(self) -> "BulkRequested":
        listed = self.customer_ids is not None
        everyone = self.all_customers_of_partner is True
        if listed == everyone:
            raise ValueError("exactly one of customer_ids (a non-empty list) or all_customers_of_partner: true "
                             f"is required; this payload has {'both' if listed else 'neither'}")
        return self

    def fingerprint(self) -> dict[str, object]:
        """What a second message reusing this bulk_id must repeat to be the same request."""
        return {"partner_id": self.partner_id, "requested_by": self.requested_by,
                "product_ids": list(self.product_ids), "customer_ids": list(self.customer_ids or []) or None,
                "all_customers_of_partner": self.all_customers_of_partner is True}


class BulkCancelled(Payload):
    bulk_id: Id
    requested_by: Id
    reason: Text


class ClockTick(Payload):
    """No fields: only the envelope's occurred_at counts, as the business date for schedules."""


PAYLOAD_MODELS: dict[str, type[Payload]] = {
    "catalog.product_defined": ProductDefined,
    "customer.registered": CustomerRegistered,
    "customer.updated": CustomerUpdated,
    "subscription.purchased": SubscriptionPurchased,
    "subscription.resized": SubscriptionResized,
    "migration.requested": MigrationRequested,
    "transfer.downgrade_ordered": DowngradeOrdered,
    "transfer.upgrade_ordered": UpgradeOrdered,
    "transfer.cancel_requested": CancelRequested,
    "migration.bulk_requested": BulkRequested,
    "migration.bulk_cancelled": BulkCancelled,
    "clock.tick": ClockTick,
}

# Built once: validation is on the hot path.
PAYLOADS: dict[str, TypeAdapter[Payload]] = {t: TypeAdapter(m) for t, m in PAYLOAD_MODELS.items()}
