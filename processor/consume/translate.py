"""The one place that knows both the wire models and the domain commands."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

from aggregates import bulk_commands, commands, transfer_commands
from aggregates.application import UnitOfWork
from aggregates.customer import Customer
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer
from contracts import inbound as wire
from contracts.parsing import Inbound

Handler = Callable[[UnitOfWork, commands.Context, Any], object]


def _half(side: str) -> Handler:
    return lambda uow, ctx, p: transfer_commands.add_half(uow, ctx, side, p.model_dump())


HANDLERS: dict[str, Handler] = {
    "catalog.product_defined": lambda uow, ctx, p: commands.define_product(
        uow, ctx, p.product_id, p.name, p.supports_usage_based, p.in_usage_bundle
    ),
    "customer.registered": lambda uow, ctx, p: commands.register_customer(
        uow, ctx, **p.model_dump()
    ),
    "customer.updated": lambda uow, ctx, p: commands.update_customer(uow, ctx, p.customer_id, p.changes()),
    "subscription.purchased": lambda uow, ctx, p: commands.purchase_subscription(uow, ctx, **p.model_dump()),
    "subscription.resized": lambda uow, ctx, p: commands.resize_subscription(uow, ctx, p.subscription_id, p.seats),
    "migration.requested": lambda uow, ctx, p: commands.request_migration(
        uow, ctx, p.request_id, p.customer_id, list(p.product_ids), p.requested_by
    ),
    "transfer.downgrade_ordered": _half("downgrade"),
    "transfer.upgrade_ordered": _half("upgrade"),
    "transfer.cancel_requested": lambda uow, ctx, p: transfer_commands.cancel_transfer(
        uow, ctx, p.operation_id, p.requested_by, p.reason
    ),
    "migration.bulk_requested": lambda uow, ctx, p: bulk_commands.request_bulk(uow, ctx, p.bulk_id, p.fingerprint()),
    "migration.bulk_cancelled": lambda uow, ctx, p: bulk_commands.cancel_bulk(
        uow, ctx, p.bulk_id, p.requested_by, p.reason
    ),
    # Its date is all it brings: `reach_date`, run for every batch, does the work.
    "clock.tick": lambda uow, ctx, p: None,
}
assert set(HANDLERS) == set(wire.PAYLOAD_MODELS), "every inbound type needs a handler"


def apply(uow: UnitOfWork, message: Inbound, ctx: commands.Context) -> None:
    HANDLERS[message.envelope.type](uow, ctx, message.payload)


def reach_date(uow: UnitOfWork, ctx: commands.Context) -> None:
    """The latest message a batch applied brought its date: if later than the business date, it
    becomes the business date and what was scheduled up to it is decided (`bulk_commands`)."""
    bulk_commands.reach_date(uow, ctx)


def new_ids(message: Inbound) -> list[UUID]:
    """Aggregates this message may find missing (a new operation, a new target subscription),
    so that a batch asks the store about them together (`UnitOfWork.prefetch`)."""
    p = message.payload
    kind = message.envelope.type
    if kind.startswith("transfer."):
        ids = [Transfer.create_id(p.operation_id)]
        # The fields, not `getattr` with a default: a name a pydantic model lacks takes its slow
        # `__getattr__` path (3.5% of the consumer, py-spy), and a downgrade has no target.
        target = p.__dict__.get("target")
        if target is not None and target.__dict__.get("kind") == "new_subscription":
            ids.append(Subscription.create_id(target.new_subscription_id))
        return ids
    if kind == "subscription.purchased":
        return [Subscription.create_id(p.subscription_id)]
    if kind == "customer.registered":
        return [Customer.create_id(p.customer_id)]
    return []


def log_context(message: Inbound) -> dict[str, str]:
    """The business ids a log line about this message is bound to."""
    values = getattr(message.payload, "__dict__", {})  # the fields: `getattr` with a default is slow on a model
    return {name: values[name] for name in _LOGGED if values.get(name) is not None}


_LOGGED = ("operation_id", "customer_id", "request_id", "subscription_id", "product_id", "bulk_id", "partner_id")
