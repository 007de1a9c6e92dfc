"""Command handlers for reference data and migrations: load aggregates through a unit of work,
apply rules, record decisions (seat transfers: `transfer_commands.py`; bulk migrations:
`bulk_commands.py`).

Each handler takes plain values; the processor translates wire messages into these calls.
Business refusals are recorded as events (they become results); invalid reference data
raises `InvalidInput` (it becomes a dead letter).
"""

from collections.abc import Collection
from datetime import date
from typing import Any

from aggregates import errors
from aggregates.application import UnitOfWork
from aggregates.catalog import Catalog
from aggregates.context import Context
from aggregates.customer import Customer
from aggregates.migration import Migration
from aggregates.migration_rules import MigrationDecision, decide_migration
from aggregates.partner import Partner
from aggregates.subscription import Subscription
from aggregates.transfer_commands import customer_of, pin_body, subscription_of


def _catalog(uow: UnitOfWork) -> Catalog:
    return uow.get(Catalog, Catalog.create_id()) or uow.add(Catalog())


# -- reference data -------------------------------------------------------------------------
def define_product(uow: UnitOfWork, ctx: Context, product_id: str, name: str, supports_usage_based: bool, in_usage_bundle: bool) -> None:
    _catalog(uow).define_product(product_id, name, supports_usage_based, in_usage_bundle, ctx.message_id)


def _partner(uow: UnitOfWork, partner_id: str) -> Partner:
    return uow.get(Partner, Partner.create_id(partner_id)) or uow.add(Partner(partner_id=partner_id))


def register_customer(uow: UnitOfWork, ctx: Context, customer_id: str, **fields: Any) -> None:
    existing = customer_of(uow, customer_id)
    if existing is not None:  # registered again: the newer data wins, as an update
        update_customer(uow, ctx, customer_id, fields)
        return
    uow.add(Customer(customer_id=customer_id, message_id=ctx.message_id, **fields))
    _partner(uow, fields["partner_id"]).add(customer_id, ctx.message_id)


def update_customer(uow: UnitOfWork, ctx: Context, customer_id: str, changes: dict[str, Any]) -> None:
    customer = customer_of(uow, customer_id)
    if customer is None:
        raise errors.UnknownReference(f"customer {customer_id} was never registered")
    before = customer.partner_id
    customer.update(changes, ctx.message_id)
    if customer.partner_id != before:  # the partner index follows (a bulk of all its customers reads it)
        _partner(uow, before).remove(customer_id, ctx.message_id)
        _partner(uow, customer.partner_id).add(customer_id, ctx.message_id)


def purchase_subscription(uow: UnitOfWork, ctx: Context, subscription_id: str, customer_id: str, **fields: Any) -> None:
    customer = customer_of(uow, customer_id)
    if customer is None:
        raise errors.UnknownReference(f"customer {customer_id} was never registered")
    if subscription_of(uow, subscription_id) is not None:
        raise errors.ConflictingInput(f"subscription {subscription_id} was already purchased")
    uow.add(
        Subscription(
            subscription_id=subscription_id,
            customer_id=customer_id,
            purchased_on=ctx.on,
            billing_start_date=fields["start_date"],
            origin="purchase",
            message_id=ctx.message_id,
            **fields,
        )
    )
    customer.add_subscription(subscription_id, ctx.message_id)


def resize_subscription(uow: UnitOfWork, ctx: Context, subscription_id: str, seats: int) -> None:
    subscription = subscription_of(uow, subscription_id)
    if subscription is None:
        raise errors.UnknownReference(f"subscription {subscription_id} was never purchased")
    first = subscription.first_in_line()
    if first is not None and seats != subscription.seats:
        pin_body(uow, first)
    subscription.resize(seats, ctx.on, ctx.message_id)


# -- migration to usage-based ---------------------------------------------------------------
def customer_holdings(uow: UnitOfWork, customer_id: str) -> tuple[Customer | None, list[Subscription]]:
    """The customer (None when unknown) and every subscription it holds: what migration rules look at."""
    customer = customer_of(uow, customer_id)
    subscriptions = [s for s in (subscription_of(uow, i) for i in (customer.subscription_ids if customer else [])) if s]
    return customer, subscriptions


def preview_migration(uow: UnitOfWork, customer_id: str, product_ids: list[str], on: date) -> MigrationDecision:
    """What a migration request would decide on `on`; records nothing (the caller does not commit)."""
    customer, subscriptions = customer_holdings(uow, customer_id)
    return decide_migration("preview", customer_id, product_ids, customer, _catalog(uow), subscriptions, on)


def request_migration(
    uow: UnitOfWork, ctx: Context, request_id: str, customer_id: str, product_ids: list[str], requested_by: str,
    on: date | None = None, joinable: Collection[str] = (), requested: Collection[str] | None = None,
) -> Migration:
    """Decide and record one migration request on `on` (default: the message's date); `joinable`:
    requests whose bundle it may join (a bulk migration's own); `requested`: the products the
    customer asked for, when more than these (a bulk's `product_ids`: none of them gets a new
    bundle key, since each joins with its own kept key on its day)."""
    on = on or ctx.on
    customer, subscriptions = customer_holdings(uow, customer_id)
    decision = decide_migration(request_id, customer_id, product_ids, customer, _catalog(uow), subscriptions, on,
                                joinable, requested)
    migration = uow.get(Migration, Migration.create_id(request_id)) or uow.add(
        Migration(request_id=request_id, customer_id=customer_id)
    )
    migration.decide(
        request_id=request_id, customer_id=customer_id, product_ids=product_ids, requested_by=requested_by,
        on=on, migrated=decision.migrated, bundle=decision.bundle, rejected=decision.rejected,
        message_id=ctx.message_id,
    )
    if decision.accepted:
        assert customer is not None
        by_id = {s.subscription_id: s for s in subscriptions}
        for entry in decision.migrated:
            sub = by_id[entry["subscription_id"]]
            sub.migrate_to_usage_based(request_id, sub.billing_model, ctx.message_id)
        if decision.joined:
            customer.join_bundle(request_id, [e for e in decision.bundle if e not in (customer.bundle or [])],
                                 ctx.message_id)
        else:
            customer.create_bundle(request_id, decision.bundle, ctx.message_id)
    return migration


# -- seat transfer --------------------------------------------------------------------------
