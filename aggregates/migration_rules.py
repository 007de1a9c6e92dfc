"""Pure rules for a migration to usage-based billing (CONTRACT.md section 3)."""

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from aggregates import errors
from aggregates.catalog import Catalog
from aggregates.customer import Customer, joined_bundle
from aggregates.ids import subscription_key
from aggregates.subscription import Subscription

RENEWAL_WINDOW_DAYS = 90


@dataclass
class MigrationDecision:
    migrated: list[dict[str, Any]] = field(default_factory=list)  # product_id, subscription_id, subscription_key
    bundle: list[dict[str, Any]] = field(default_factory=list)  # product_id, subscription_key
    rejected: list[dict[str, Any]] = field(default_factory=list)  # product_id, reason_code, detail, eligible_from

    joined: bool = False  # the accepted products join an existing bundle of the same bulk

    @property
    def accepted(self) -> bool:
        return bool(self.migrated)


def customer_refusals(customer: Customer | None, customer_id: str, joinable: Collection[str] = ()) -> list[errors.Refusal]:
    """Every customer-level code that applies, in table order: each refuses every product. A
    bundle created by one of the `joinable` requests (the same bulk migration's) is joined, not
    ALREADY_MIGRATED."""
    if customer is None:
        return [errors.CustomerUnknown(f"customer {customer_id} was never registered")]
    found: list[errors.Refusal] = []
    if not customer.data_complete:
        found.append(errors.IncompleteCustomerData(f"customer {customer_id} data is incomplete or out of date"))
    conflict = customer.relationship_conflict
    if conflict:
        found.append(errors.ConflictingRelationship(f"customer {customer_id}: {conflict}"))
    if customer.bundle is not None and customer.migrated_by not in joinable:
        found.append(errors.AlreadyMigrated(
            f"customer {customer_id} already has a usage-based bundle (request {customer.migrated_by})",
            request_id=customer.migrated_by,
        ))
    return found


def check_customer(customer: Customer | None, customer_id: str, joinable: Collection[str] = ()) -> Customer:
    refusals = customer_refusals(customer, customer_id, joinable)
    if refusals:
        raise refusals[0]
    assert customer is not None
    return customer


def window_opens(end_date: date) -> date:
    """The first day of the renewal window of a fixed-term subscription ending on `end_date`."""
    return end_date - timedelta(days=RENEWAL_WINDOW_DAYS)


def renewal_window_opens(sub: Subscription) -> date:
    return window_opens(sub.end_date)


def product_refusals(product_id: str, catalog: Catalog, subscriptions: list[Subscription], on: date
                     ) -> tuple[list[errors.Refusal], list[Subscription]]:
    """Every product-level code that applies, in table order, and the subscriptions that would migrate."""
    found: list[errors.Refusal] = []
    if not catalog.supports_usage_based(product_id):
        known = product_id in catalog.products
        found.append(errors.ProductNotSupported(
            f"product {product_id} " + ("does not support usage-based billing" if known else "is not in the catalog")
        ))
    active = [s for s in subscriptions if s.product_id == product_id and s.is_active(on)]
    fixed = [s for s in active if s.billing_model != "usage_based"]
    company = [s.subscription_id for s in fixed if s.management == "company_managed"]
    if company:
        found.append(errors.CompanyManagedNotSupported(
            f"subscription {', '.join(company)} is company managed; ask Order Services to make it partner managed",
            subscription_ids=company,
        ))
    if not active:  # an active usage-based subscription is one: it is a duplicate, not a missing one
        later = [s.start_date for s in subscriptions if s.product_id == product_id and s.start_date > on]
        found.append(errors.NoSubscription(f"no active subscription of {product_id} on {on}",
                                           eligible_from=min(later) if later else None))
    usage = [s.subscription_id for s in active if s.billing_model == "usage_based"]
    if usage:
        found.append(errors.DuplicateUsageSubscription(
            f"usage-based subscription {', '.join(usage)} of {product_id} is already active", subscription_ids=usage
        ))
    early = [s for s in fixed if s.billing_model == "annual" and s.end_date > on + timedelta(days=RENEWAL_WINDOW_DAYS)]
    if early:
        opens = max(renewal_window_opens(s) for s in early)
        ends = ", ".join(f"{s.subscription_id} expires {s.end_date}" for s in early)
        found.append(errors.NotInRenewalWindow(
            f"{ends}; the {RENEWAL_WINDOW_DAYS}-day renewal window opens {opens}",
            eligible_from=opens,
            end_dates=[s.end_date.isoformat() for s in early],
        ))
    return found, fixed


def check_product(product_id: str, catalog: Catalog, subscriptions: list[Subscription], on: date) -> list[Subscription]:
    """The subscriptions that migrate for this product, or the first refusal any of them meets."""
    refusals, migrating = product_refusals(product_id, catalog, subscriptions, on)
    if refusals:
        raise refusals[0]
    return migrating


def decide_migration(
    request_id: str,
    customer_id: str,
    product_ids: list[str],
    customer: Customer | None,
    catalog: Catalog,
    subscriptions: list[Subscription],
    on: date,
    joinable: Collection[str] = (),
    requested_overall: Collection[str] | None = None,
) -> MigrationDecision:
    """`joinable`: request ids whose bundle this request may join (see `check_customer`);
    `requested_overall`: every product the customer asked for (a bulk's `product_ids`, CONTRACT.md
    section 5, 1.2), when this decision covers only some of them: a new bundle gives new keys
    only to bundle products outside it."""
    requested = list(dict.fromkeys(product_ids))  # a product named twice is decided once
    decision = MigrationDecision()
    try:
        check_customer(customer, customer_id, joinable)
    except errors.Refusal as refusal:
        decision.rejected = [_rejection(p, refusal) for p in requested]
        return decision
    for product_id in requested:
        try:
            migrating = check_product(product_id, catalog, subscriptions, on)
        except errors.Refusal as refusal:
            decision.rejected.append(_rejection(product_id, refusal))
            continue
        for sub in sorted(migrating, key=lambda s: s.subscription_id):
            entry = {"product_id": product_id, "subscription_id": sub.subscription_id, "subscription_key": sub.subscription_key}
            decision.migrated.append(entry)
            decision.bundle.append({"product_id": product_id, "subscription_key": sub.subscription_key})
    assert customer is not None
    if decision.accepted and customer.bundle is not None:
        # Joining the bundle an earlier decision of the same bulk created: the bundle already
        # holds the catalog's bundle products; the result shows the whole bundle.
        decision.joined = True
        decision.bundle = joined_bundle(customer.bundle, decision.bundle)
    elif decision.accepted:
        asked = set(requested) | set(requested_overall or ())
        for product_id in catalog.bundle_products():
            if product_id not in asked:
                key = subscription_key("bundle", request_id, product_id)
                decision.bundle.append({"product_id": product_id, "subscription_key": key})
    return decision


def _rejection(product_id: str, refusal: errors.Refusal) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "reason_code": refusal.reason,
        "detail": refusal.detail,
        "eligible_from": refusal.eligible_from,
    }
