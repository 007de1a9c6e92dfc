"""Bulk migrations (CONTRACT.md section 5): each customer decided at the bulk's date, products
waiting only for their renewal window scheduled, and decided again when the business date
reaches their day. Like `commands`, plain values in, events out, no I/O."""

from datetime import date
from typing import Any

from aggregates import commands, errors
from aggregates.application import UnitOfWork
from aggregates.bulk import MIGRATED, REJECTED, SCHEDULED, Bulk, bulk_request_id
from aggregates.calendar import CALENDAR_ID, Calendar
from aggregates.context import Context
from aggregates.customer import Customer
from aggregates.migration import Migration
from aggregates.partner import Partner
from aggregates.subscription import Subscription

WAITS_FOR_WINDOW = "NOT_IN_RENEWAL_WINDOW"


def calendar(uow: UnitOfWork) -> Calendar | None:
    return uow.get(Calendar, CALENDAR_ID)


def reach_date(uow: UnitOfWork, ctx: Context) -> Calendar:
    """An applied message brought its date: when that moves the business date on, decide every
    bulk's products due by then. Cheap when the date did not move (one comparison)."""
    found = calendar(uow)
    if found is None:
        return uow.add(Calendar(today=ctx.on, message_id=ctx.message_id))
    if ctx.on > found.today:
        found.advance(ctx.on, ctx.message_id)
        for bulk_id in found.due_by(ctx.on):
            bulk = uow.get(Bulk, Bulk.create_id(bulk_id))
            if bulk is None:  # cannot happen: a bulk books its days in the transaction that records it
                continue
            _decide_due(uow, ctx, bulk, found)
    return found


def request_bulk(uow: UnitOfWork, ctx: Context, bulk_id: str, request: dict[str, Any]) -> Bulk:
    """`request`: the payload's fingerprint (partner_id, requested_by, product_ids,
    customer_ids or all_customers_of_partner)."""
    existing = uow.get(Bulk, Bulk.create_id(bulk_id))
    if existing is not None:
        if existing.request == request:
            return existing  # the same request under another message id: already decided
        changed = sorted(k for k in request if request[k] != existing.request.get(k))
        raise errors.ConflictingInput(f"bulk_id {bulk_id} was already used for another request "
                                      f"(different {', '.join(changed)})")
    bulk = uow.add(Bulk(bulk_id=bulk_id, request=request, on=ctx.on, message_id=ctx.message_id))
    if request["all_customers_of_partner"]:
        partner = uow.get(Partner, Partner.create_id(request["partner_id"]))
        # Sorted: registration order depends on how partitions interleaved, and the same input
        # must reach the same result, byte for byte, on a replay from Kafka.
        customers = sorted(partner.customer_ids) if partner is not None else []
    else:
        customers = list(dict.fromkeys(request["customer_ids"]))  # a customer named twice is decided once
    _load(uow, customers, [bulk_request_id(bulk_id, c) for c in customers])
    decisions = [_decide(uow, ctx, bulk, c, bulk.product_ids, ctx.on, bulk_request_id(bulk_id, c)) for c in customers]
    bulk.accept(bulk_id, customers, decisions, ctx.message_id)
    clock = calendar(uow) or uow.add(Calendar(today=ctx.on, message_id=ctx.message_id))
    _decide_due(uow, ctx, bulk, clock)  # the business date may be past some days already
    return uow.record_last(bulk)


def cancel_bulk(uow: UnitOfWork, ctx: Context, bulk_id: str, requested_by: str, reason: str) -> Bulk:
    bulk = uow.get(Bulk, Bulk.create_id(bulk_id))
    if bulk is None:
        raise errors.UnknownReference(f"bulk {bulk_id} was never requested")
    if not bulk.open:
        bulk.refuse_cancel(requested_by, reason, f"the bulk had already {bulk.status}", ctx.message_id)
        return bulk
    bulk.cancel(requested_by, reason, ctx.message_id)
    clock = calendar(uow)
    if clock is not None:
        clock.release(bulk_id, None, ctx.message_id)
    bulk.finish(bulk_id, "cancelled", bulk.counts(), ctx.message_id)
    return uow.record_last(bulk)


def _decide_due(uow: UnitOfWork, ctx: Context, bulk: Bulk, clock: Calendar) -> None:
    """Decide the bulk's days up to the business date, then book what is left (or finish)."""
    while bulk.open and (day := bulk.next_due()) is not None and day <= clock.today:
        due = bulk.due[day.isoformat()]
        _load(uow, list(due), [bulk_request_id(bulk.bulk_id, c, day) for c in due])
        decisions = [_decide(uow, ctx, bulk, customer_id, product_ids, day, bulk_request_id(bulk.bulk_id, customer_id, day))
                     for customer_id, product_ids in due.items()]
        bulk.decide_scheduled(day, decisions, ctx.message_id)
    clock.release(bulk.bulk_id, clock.today, ctx.message_id)
    if bulk.due:
        clock.book(bulk.bulk_id, [date.fromisoformat(d) for d in bulk.due], ctx.message_id)
    elif bulk.open:
        bulk.finish(bulk.bulk_id, "finished", bulk.counts(), ctx.message_id)
    uow.record_last(bulk)  # bulk_accepted and bulk_finished after the customers' results


def _load(uow: UnitOfWork, customer_ids: list[str], request_ids: list[str]) -> None:
    """What deciding these customers reads, in a few queries rather than a few per customer: the
    customers, then their subscriptions; the new migration requests are only asked whether
    they exist."""
    uow.load_many(Customer, [Customer.create_id(c) for c in customer_ids])
    subscriptions = [Subscription.create_id(s) for c in customer_ids
                     if (customer := uow.get(Customer, Customer.create_id(c))) is not None
                     for s in customer.subscription_ids]
    uow.load_many(Subscription, subscriptions)
    uow.prefetch([Migration.create_id(r) for r in request_ids])


def _decide(uow: UnitOfWork, ctx: Context, bulk: Bulk, customer_id: str, product_ids: list[str], on: date,
            request_id: str) -> dict[str, Any]:
    """One customer's migration request within the bulk, recorded like any other (its result is
    published as one), and what it means for the bulk: each product migrated, refused or waiting."""
    migration = commands.request_migration(uow, ctx, request_id, customer_id, product_ids, bulk.requested_by, on=on,
                                           joinable=bulk.request_ids(customer_id), requested=bulk.product_ids)
    decided = migration.decisions[-1]
    products: dict[str, dict[str, Any]] = {}
    for entry in decided["migrated"]:  # a product may migrate several subscriptions, each keeping its key
        product = products.setdefault(entry["product_id"], {"outcome": MIGRATED, "reason_code": None, "detail": None,
                                                            "on": on.isoformat(), "subscriptions": []})
        product["subscriptions"].append({"subscription_id": entry["subscription_id"],
                                         "subscription_key": entry["subscription_key"]})
    for entry in decided["rejected"]:
        opens = entry["eligible_from"]
        waits = entry["reason_code"] == WAITS_FOR_WINDOW and opens is not None and opens > on
        products[entry["product_id"]] = {"outcome": SCHEDULED if waits else REJECTED, "reason_code": entry["reason_code"],
                                         "detail": entry["detail"], "on": (opens if waits else on).isoformat()}
    return {"customer_id": customer_id, "request_id": request_id, "products": products}
