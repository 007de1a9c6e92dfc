"""Starting work through the API: migrations, partial upgrades, bulk migrations and re-drives.

Every route here answers 202 with the ids to follow once the orders are on the orders topic;
the processor decides them like any upstream order. `authenticate` (api.py) has already
checked the caller's token and privilege before any body is read.
"""

import re
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from aggregates import bulk_commands
from aggregates.application import KeptConflicting, Orders
from aggregates.bulk import Bulk
from aggregates.commands import Context
from aggregates.inbox import recorded_dead_letter
from aggregates.redrive import message_for, new_message_id, redrive
from aggregates.submission import KeyReused
from contracts.fields import MAX_COUNT
from projections.queries import Queries
from projections.submit import (
    BadOrder,
    BulkCancelOrder,
    BulkOrder,
    MigrationOrder,
    OrdersOut,
    OrdersUnavailable,
    TransferOrder,
    checked,
    envelope,
    place,
    source_of,
)


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        self.status, self.error, self.detail = status, error, detail


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


def orders_router(app: Orders, queries: Queries, orders: OrdersOut, clock: Callable[[], datetime],
                  writing: threading.Lock, catch_up: Callable[[], None]) -> APIRouter:
    router = APIRouter()

    def submit(request: Request, key: str | None, kind: str, body: dict[str, Any],
               build: Callable[[Callable[[str], str], datetime], tuple[list[dict[str, Any]], dict[str, Any]]]) -> JSONResponse:
        by: str = request.state.user
        idempotency_key = _key(key)
        now = clock()
        try:
            with writing:
                answer, repeat = place(app, orders, by, idempotency_key, kind, body, lambda derive: build(derive, now))
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
    def request_migration(order: Annotated[MigrationOrder, Body()], request: Request,
                          idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Migrate a customer's products to usage-based billing: one `migration.requested`, as the
        portal's "Migrate to usage-based" window places it (`requested_by`: you). Follow it at `follow`."""
        def build(derive: Callable[[str], str], now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            request_id = order.request_id or derive("request")
            payload = {"request_id": request_id, "customer_id": order.customer_id, "product_ids": order.product_ids,
                       "requested_by": request.state.user}
            message = checked(envelope(derive("message"), "migration.requested", payload, now), order.customer_id)
            return [message], {"kind": "migration", "request_id": request_id, "customer_id": order.customer_id,
                               "message_ids": [derive("message")], "follow": f"/api/migrations/{request_id}"}
        return submit(request, idempotency_key, "migration", order.model_dump(), build)

    @router.post("/api/transfers", tags=["start work"], status_code=202)
    def request_transfer(order: Annotated[TransferOrder, Body()], request: Request,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """A partial upgrade: move `seats` of a subscription into a new co-termed one or an existing
        one. Places the two orders the upgrade tool places, a `transfer.downgrade_ordered` and a
        `transfer.upgrade_ordered` sharing a new `operation_id`, as two messages."""
        source = source_of(app.unit_of_work(), order.subscription_id)
        customer_id = order.customer_id or (source.customer_id if source is not None else None)
        if customer_id is None:
            raise ApiError(400, "INVALID_ORDER", f"subscription {order.subscription_id} is unknown: give customer_id")

        def build(derive: Callable[[str], str], now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
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
                    "requested_by": request.state.user}
            down = checked(envelope(derive("downgrade"), "transfer.downgrade_ordered",
                                    {**half, "order_id": derive("downgrade-order"),
                                     "subscription_id": order.subscription_id}, now), customer_id)
            up = checked(envelope(derive("upgrade"), "transfer.upgrade_ordered",
                                  {**half, "order_id": derive("upgrade-order"), "target": target}, now), customer_id)
            return [down, up], {"kind": "transfer", "operation_id": operation_id, "customer_id": customer_id,
                                "message_ids": [derive("downgrade"), derive("upgrade")],
                                "follow": f"/api/operations/{operation_id}"}
        return submit(request, idempotency_key, "transfer", order.model_dump(), build)

    @router.post("/api/bulk", tags=["start work"], status_code=202)
    def request_bulk(order: Annotated[BulkOrder, Body()], request: Request,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """A bulk migration: one `migration.bulk_requested` for a partner's listed customers or all of them."""
        def build(derive: Callable[[str], str], now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            bulk_id = order.bulk_id or derive("bulk")
            payload: dict[str, Any] = {"bulk_id": bulk_id, "partner_id": order.partner_id,
                                       "requested_by": request.state.user, "product_ids": order.product_ids}
            if order.customer_ids is not None:
                payload["customer_ids"] = order.customer_ids
            if order.all_customers_of_partner is not None:
                payload["all_customers_of_partner"] = order.all_customers_of_partner
            message = checked(envelope(derive("message"), "migration.bulk_requested", payload, now), order.partner_id)
            return [message], {"kind": "bulk", "bulk_id": bulk_id, "message_ids": [derive("message")],
                               "follow": f"/api/bulk/{bulk_id}"}
        return submit(request, idempotency_key, "bulk", order.model_dump(), build)

    @router.post("/api/bulk/{bulk_id}/cancel", tags=["start work"], status_code=202)
    def cancel_bulk(bulk_id: str, order: Annotated[BulkCancelOrder, Body()], request: Request,
                    idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Cancel a running bulk migration: one `migration.bulk_cancelled`. Products already migrated stay so."""
        bulk = app.unit_of_work().get(Bulk, Bulk.create_id(bulk_id))
        if bulk is None:  # published, it would be a dead letter (UNKNOWN_REFERENCE): say so now instead
            raise ApiError(404, "NOT_FOUND", f"bulk {bulk_id} is unknown")
        if not bulk.open:
            raise ApiError(409, "BULK_CLOSED", f"bulk {bulk_id} is already {bulk.status}: nothing is left to cancel")

        def build(derive: Callable[[str], str], now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            payload = {"bulk_id": bulk_id, "requested_by": request.state.user, "reason": order.reason}
            # Unkeyed, as the contract says: the cancel does not name its partner.
            message = checked(envelope(derive("message"), "migration.bulk_cancelled", payload, now), None)
            return [message], {"kind": "bulk_cancel", "bulk_id": bulk_id, "message_ids": [derive("message")],
                               "follow": f"/api/bulk/{bulk_id}"}
        return submit(request, idempotency_key, "bulk_cancel", {"bulk_id": bulk_id, **order.model_dump()}, build)

    @router.post("/api/deadletters/{deadletter_id}/redrive", tags=["start work"], status_code=202)
    def redrive_deadletter(deadletter_id: str, order: Annotated[RedriveOrder, Body()], request: Request,
                           idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Publish a dead letter again (or a corrected message in its place), once, recorded with who and
        why: the same path as `coterm redrive`. A repeat of the same key answers as the first time."""
        by: str = request.state.user
        if not re.fullmatch(r"[0-9a-f]{32}", deadletter_id):
            raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown (ids are 32 hex digits)")
        recorded = recorded_dead_letter(app.events, deadletter_id)
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
        why_not = orders.unavailable()
        if why_not is not None:
            raise ApiError(503, "ORDERS_UNAVAILABLE", why_not)

        def publish(key: bytes | None, value: bytes) -> None:
            orders.publish([(key, value)])

        try:
            with writing:
                [outcome] = redrive(app, publish, [deadletter_id], by, order.why, order.message)
        except OrdersUnavailable as error:
            raise ApiError(503, "ORDERS_UNAVAILABLE", str(error)) from None
        answer = {"kind": "redrive", "deadletter_id": deadletter_id, "new_message_id": outcome.new_message_id,
                  "by": by, "follow": f"/api/deadletters/{deadletter_id}"}
        if not outcome.done:
            letter = app.repository.get(UUID(hex=deadletter_id)).redriven or {}
            if letter.get("by") == by and letter.get("why") == order.why:  # the same request again: answered alike
                return JSONResponse({**answer, "repeat": True}, status_code=202)
            raise ApiError(409, "ALREADY_REDRIVEN", outcome.why)
        catch_up()
        return JSONResponse({**answer, "repeat": False}, status_code=202)

    @router.get("/api/bulk/preview", tags=["what-if"])
    def preview_bulk(
        partner: Annotated[str, Query(min_length=1, max_length=200)],
        product: Annotated[list[str], Query(min_length=1, max_length=500, description="product_id; repeat for several")],
        customer: Annotated[list[str] | None, Query(max_length=MAX_COUNT, description="customer_id; repeat, or omit for all of the partner's")] = None,
        on: Annotated[date | None, Query(description="request date (default: today, the date an order placed now carries)")] = None,
    ) -> dict[str, Any]:
        """What a bulk migration requested on that date would decide, recording nothing: how many
        products migrate at once, how many are scheduled (by date) and how many are refused (by reason)."""
        day = on or clock().date()
        request_body = {"partner_id": partner, "requested_by": "preview", "product_ids": list(dict.fromkeys(product)),
                        "customer_ids": customer or None, "all_customers_of_partner": not customer}
        at = datetime.combine(day, datetime.min.time(), tzinfo=clock().tzinfo)
        ctx = Context(message_id="preview", occurred_at=at, recorded_at=at)
        with writing:  # the bulk's own rules on a unit of work that is never recorded
            uow = app.unit_of_work()
            try:
                bulk = bulk_commands.request_bulk(uow, ctx, "preview-" + uuid4().hex, request_body)
                outcomes = [(c, p, o) for c, products in bulk.outcomes.items() for p, o in products.items()]
                scheduled = bulk.scheduled()
            finally:
                uow.discard()
        refused: dict[str, int] = {}
        for _, _, o in outcomes:
            if o["outcome"] == "rejected":
                refused[o["reason_code"]] = refused.get(o["reason_code"], 0) + 1
        by_date: dict[str, int] = {}
        for s in scheduled:
            by_date[s["on"]] = by_date.get(s["on"], 0) + 1
        return {"partner_id": partner, "on": day.isoformat(), "customers": len(bulk.outcomes),
                "migrate_now": sum(o["outcome"] == "migrated" for _, _, o in outcomes),
                "scheduled": sum(by_date.values()), "scheduled_by_date": dict(sorted(by_date.items())),
                "refused": sum(refused.values()), "refused_by_reason": dict(sorted(refused.items()))}

    return router
