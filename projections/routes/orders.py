"""Starting work through the API (routes): migrations, partial upgrades, bulk migrations and re-drives.

Every route here answers 202 with the ids to follow once the orders are on the orders topic;
the processor decides them like any upstream order. `authenticate` (projections/auth.py) has already
checked the caller's token and privilege before any body is read.
"""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from aggregates.application import KeptConflicting
from aggregates.bulk import Bulk
from aggregates.inbox import recorded_dead_letter
from aggregates.redrive import message_for, new_message_id, redrive
from aggregates.submission import KeyReused
from aggregates.transfer_commands import subscription_of
from projections.identity import Tenant
from projections.routes.bulk import tenant_bulk_customers
from projections.routes.context import Api, ApiError, Ctx, Scope, User, not_found
from projections.submit import (
    BadOrder,
    BulkCancelOrder,
    BulkOrder,
    MigrationOrder,
    OrdersUnavailable,
    TransferOrder,
    checked,
    envelope,
    place,
)


class RedriveOrder(BaseModel):
    why: str = Field(min_length=1, max_length=500, description="why: recorded on the dead letter")
    message: dict[str, Any] | None = Field(None, description="a corrected message (the whole envelope) instead of the original")


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description=(
    "one per order a person means to place (the dashboard makes one per form): the same key again "
    "places nothing new and answers as the first time. Without one, coterm makes one and returns it: "
    "retry with that key, or a retried POST places a second order"))]


def _key(value: str | None) -> str:
    """The caller's key; without one, a fresh key (returned in the answer): the order is placed, but
    a retry of that POST without the returned key would place another (as with any such API)."""
    if value is None or not value.strip():
        return "generated-" + uuid4().hex
    if len(value) > 200 or not value.isprintable():
        raise ApiError(400, "BAD_PARAMETER", "Idempotency-Key: at most 200 printable characters")
    return value.strip()


Built = tuple[list[dict[str, Any]], dict[str, Any]]  # the checked messages, and the answer
Build = Callable[[Callable[[str], str], datetime], Built]
router = APIRouter()


def _submit(ctx: Api, by: str, key: str | None, kind: str, body: dict[str, Any], build: Build,
            tenant: Tenant | None = None) -> JSONResponse:
    idempotency_key = _key(key)
    now = ctx.clock()
    try:
        with ctx.writing:
            answer, repeat = place(ctx.app, ctx.orders, by, idempotency_key, kind, body, lambda derive: build(derive, now),
                                   tenant=str(tenant) if tenant else None)
    except BadOrder as error:
        raise ApiError(400, "INVALID_ORDER", str(error)) from None
    except KeyReused as error:
        raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", str(error)) from None
    except OrdersUnavailable as error:
        raise ApiError(503, "ORDERS_UNAVAILABLE", str(error)) from None
    except KeptConflicting:
        raise ApiError(409, "CONFLICT", "the submission kept conflicting with another; try again") from None
    return JSONResponse({**answer, "repeat": repeat, "by": by, "idempotency_key": idempotency_key}, status_code=202,
                        headers={"Idempotency-Key": idempotency_key})


@router.post("/api/migrations", tags=["start work"], status_code=202)
def request_migration(ctx: Ctx, by: User, tenant: Scope, order: Annotated[MigrationOrder, Body()],
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Migrate a customer's products to usage-based billing: one `migration.requested`, as the
    portal's "Migrate to usage-based" window places it (`requested_by`: you). Follow it at `follow`.
    A partner's or distributor's administrator migrates its own customers only."""
    if tenant is not None and not ctx.queries.visible_customer(order.customer_id, tenant):
        raise not_found("customer", order.customer_id)
    def build(derive: Callable[[str], str], now: datetime) -> Built:
        request_id = order.request_id or derive("request")
        payload = {"request_id": request_id, "customer_id": order.customer_id, "product_ids": order.product_ids,
                   "requested_by": by}
        message = checked(envelope(derive("message"), "migration.requested", payload, now), order.customer_id)
        return [message], {"kind": "migration", "request_id": request_id, "customer_id": order.customer_id,
                           "message_ids": [derive("message")], "follow": f"/api/migrations/{request_id}"}
    return _submit(ctx, by, idempotency_key, "migration", order.model_dump(), build, tenant)


@router.post("/api/transfers", tags=["start work"], status_code=202)
def request_transfer(ctx: Ctx, by: User, order: Annotated[TransferOrder, Body()],
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A partial upgrade: move `seats` of a subscription into a new co-termed one or an existing
    one. Places the two orders the upgrade tool places, a `transfer.downgrade_ordered` and a
    `transfer.upgrade_ordered` sharing a new `operation_id`, as two messages."""
    source = subscription_of(ctx.app.unit_of_work(), order.subscription_id)
    customer_id = order.customer_id or (source.customer_id if source is not None else None)
    if customer_id is None:
        raise ApiError(400, "INVALID_ORDER", f"subscription {order.subscription_id} is unknown: give customer_id")

    def build(derive: Callable[[str], str], now: datetime) -> Built:
        operation_id = order.operation_id or derive("operation")
        target: dict[str, Any]
        if order.target.kind == "new_subscription":
            target = {"kind": "new_subscription",
                      "new_subscription_id": order.target.new_subscription_id or derive("new-subscription"),
                      "product_id": order.target.product_id or (source.product_id if source else None),
                      "plan_id": order.target.plan_id,
                      "term_months": order.target.term_months or (source.term_months if source else None)}
        else:
            target = {"kind": "existing_subscription", "subscription_id": order.target.subscription_id}
        half = {"operation_id": operation_id, "customer_id": customer_id, "seats": order.seats,
                "requested_by": by}
        down = checked(envelope(derive("downgrade"), "transfer.downgrade_ordered",
                                {**half, "order_id": derive("downgrade-order"),
                                 "subscription_id": order.subscription_id}, now), customer_id)
        up = checked(envelope(derive("upgrade"), "transfer.upgrade_ordered",
                              {**half, "order_id": derive("upgrade-order"), "target": target}, now), customer_id)
        return [down, up], {"kind": "transfer", "operation_id": operation_id, "customer_id": customer_id,
                            "message_ids": [derive("downgrade"), derive("upgrade")],
                            "follow": f"/api/operations/{operation_id}"}
    return _submit(ctx, by, idempotency_key, "transfer", order.model_dump(), build)


@router.post("/api/bulk", tags=["start work"], status_code=202)
def request_bulk(ctx: Ctx, by: User, tenant: Scope, order: Annotated[BulkOrder, Body()],
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A bulk migration: one `migration.bulk_requested` for a partner's listed customers or all of them.
    A partner's user: its own partner's (`partner_id` may be left out). A distributor's: its own
    customers of one reseller (`partner_id`); "all" becomes the list of them."""
    partner_id = order.partner_id or (tenant.id if tenant is not None and tenant.kind == "partner" else None)
    if partner_id is None:
        raise ApiError(400, "INVALID_ORDER", "partner_id: the partner whose customers to migrate")
    customer_ids, every = order.customer_ids, order.all_customers_of_partner
    if tenant is not None:  # its partner and every listed customer its own, else 404
        own = tenant_bulk_customers(ctx.queries, tenant, partner_id, customer_ids)
        if tenant.kind == "distributor" and every and customer_ids is None:
            customer_ids, every = own, None  # "all" is all of its own, listed now

    def build(derive: Callable[[str], str], now: datetime) -> Built:
        bulk_id = order.bulk_id or derive("bulk")
        payload: dict[str, Any] = {"bulk_id": bulk_id, "partner_id": partner_id,
                                   "requested_by": by, "product_ids": order.product_ids}
        if customer_ids is not None:
            payload["customer_ids"] = customer_ids
        if every is not None:
            payload["all_customers_of_partner"] = every
        message = checked(envelope(derive("message"), "migration.bulk_requested", payload, now), partner_id)
        return [message], {"kind": "bulk", "bulk_id": bulk_id, "message_ids": [derive("message")],
                           "follow": f"/api/bulk/{bulk_id}"}
    return _submit(ctx, by, idempotency_key, "bulk", order.model_dump(), build, tenant)


@router.post("/api/bulk/{bulk_id}/cancel", tags=["start work"], status_code=202)
def cancel_bulk(ctx: Ctx, by: User, tenant: Scope, bulk_id: str, order: Annotated[BulkCancelOrder, Body()],
                idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Cancel a running bulk migration: one `migration.bulk_cancelled`. Products already migrated stay so.
    A partner's or distributor's administrator cancels only a bulk all of whose customers are its own."""
    bulk = ctx.app.unit_of_work().get(Bulk, Bulk.create_id(bulk_id))
    theirs = ctx.queries.bulk_doc(bulk_id, tenant) if tenant is not None and bulk is not None else None
    if bulk is None or (tenant is not None and theirs is None):
        # published, it would be a dead letter (UNKNOWN_REFERENCE): say so now instead
        raise not_found("bulk", bulk_id)
    if theirs is not None:
        whole = ctx.queries.bulk_doc(bulk_id) or {"customers": {}}
        if set(whole["customers"]) - set(theirs["customers"]):
            raise ApiError(403, "FORBIDDEN", f"bulk {bulk_id} covers customers that are not {tenant}'s: "
                           "provider staff may cancel it")
    if not bulk.open:
        raise ApiError(409, "BULK_CLOSED", f"bulk {bulk_id} is already {bulk.status}: nothing is left to cancel")

    def build(derive: Callable[[str], str], now: datetime) -> Built:
        payload = {"bulk_id": bulk_id, "requested_by": by, "reason": order.reason}
        # Unkeyed, as the contract says: the cancel does not name its partner.
        message = checked(envelope(derive("message"), "migration.bulk_cancelled", payload, now), None)
        return [message], {"kind": "bulk_cancel", "bulk_id": bulk_id, "message_ids": [derive("message")],
                           "follow": f"/api/bulk/{bulk_id}"}
    return _submit(ctx, by, idempotency_key, "bulk_cancel", {"bulk_id": bulk_id, **order.model_dump()}, build, tenant)


@router.post("/api/deadletters/{deadletter_id}/redrive", tags=["start work"], status_code=202)
def redrive_deadletter(ctx: Ctx, by: User, deadletter_id: str, order: Annotated[RedriveOrder, Body()],
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Publish a dead letter again (or a corrected message in its place), once, recorded with who and
    why: the same path as `coterm redrive`. A repeat of the same key answers as the first time."""
    by: str = by
    if not re.fullmatch(r"[0-9a-f]{32}", deadletter_id):
        raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown (ids are 32 hex digits)")
    recorded = recorded_dead_letter(ctx.app.events, deadletter_id)
    if recorded is None:
        raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown")
    try:
        message_for(recorded, deadletter_id, order.message)
    except ValueError as error:
        raise ApiError(400, "INVALID_ORDER", str(error)) from None
    if order.message is not None:  # a corrected message must be one the processor can take
        try:
            checked({**order.message, "message_id": new_message_id(deadletter_id)}, None)
        except BadOrder as error:
            raise ApiError(400, "INVALID_ORDER", f"the corrected message: {error}") from None
    why_not = ctx.orders.unavailable()
    if why_not is not None:
        raise ApiError(503, "ORDERS_UNAVAILABLE", why_not)

    def publish(key: bytes | None, value: bytes) -> None:
        ctx.orders.publish([(key, value)])

    try:
        with ctx.writing:
            [outcome] = redrive(ctx.app, publish, [deadletter_id], by, order.why, order.message)
    except OrdersUnavailable as error:
        raise ApiError(503, "ORDERS_UNAVAILABLE", str(error)) from None
    answer = {"kind": "redrive", "deadletter_id": deadletter_id, "new_message_id": outcome.new_message_id,
              "by": by, "follow": f"/api/deadletters/{deadletter_id}"}
    if not outcome.done:
        letter = ctx.app.repository.get(UUID(hex=deadletter_id)).redriven or {}
        if letter.get("by") == by and letter.get("why") == order.why:  # the same request again: answered alike
            return JSONResponse({**answer, "repeat": True}, status_code=202)
        raise ApiError(409, "ALREADY_REDRIVEN", outcome.why)
    ctx.catch_up()
    return JSONResponse({**answer, "repeat": False}, status_code=202)

