"""The vendor as coterm sees it, for provider staff: seat drift found by reconciliation
(CONTRACT.md section 7; the list with its counts, one subscription's drift and history, the
passes, resolve and explain) and whether the vendor throttles coterm now."""

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from aggregates import drift_commands, errors
from aggregates.application import UnitOfWork
from aggregates.subscription import Subscription
from projections.drift_queries import BadDriftQuery
from projections.routes.context import Api, ApiError, Ctx, User, not_found

router = APIRouter()


class DriftAction(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="why: recorded in the subscription's history")


class DriftActionResult(BaseModel):
    subscription_id: str
    action: str
    action_id: str
    by: str
    seats: int
    drift: dict[str, Any]


@router.get("/api/drift", tags=["reconciliation"])
def list_drift(
    ctx: Ctx,
    status: Annotated[str | None, Query(description="open, explained, resolved or cleared; default: open and explained")] = None,
    customer: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
) -> dict[str, Any]:
    """Subscriptions whose seats the vendor counts differently, newest drift first, with the
    number of subscriptions in each drift status."""
    try:
        return ctx.queries.list_drift(status, customer, limit, cursor)
    except BadDriftQuery as error:
        raise ApiError(400, "BAD_PARAMETER", str(error)) from None


@router.get("/api/drift/{subscription_id}", tags=["reconciliation"])
def get_drift(ctx: Ctx, subscription_id: str) -> dict[str, Any]:
    """One subscription's seats, its drift, and every drift event it has had."""
    found = ctx.queries.drift_of(subscription_id)
    if found is None:
        raise not_found("subscription", subscription_id)
    return found


@router.get("/api/reconciliation", tags=["reconciliation"])
def reconciliation(ctx: Ctx) -> dict[str, Any]:
    """The reconciliation pass under way (how far it is) and the last one finished, with their counts."""
    return ctx.queries.reconciliation()


@router.get("/api/vendor", tags=["reconciliation"])
def vendor(ctx: Ctx) -> dict[str, Any]:
    """How the vendor treats coterm now, from the leading outbox: calls out at once at most (32,
    halved by each burst of 429s), 429s seen, when the last came, and `throttling` (a 429 within a
    minute, or the limit still below its maximum). `known` false: no outbox has reported yet."""
    return ctx.queries.vendor_status(datetime.now(timezone.utc))  # the real clock: how old the row is


def _act(ctx: Api, action: str, subscription_id: str, by: str, body: DriftAction) -> DriftActionResult:
    action_id = str(uuid.uuid4())
    act = {"resolve": drift_commands.resolve_drift, "explain": drift_commands.explain_drift}[action]

    def change(uow: UnitOfWork) -> Subscription:
        if drift_commands.subscription_of(uow, subscription_id) is None:
            raise ApiError(404, "NOT_FOUND", f"subscription {subscription_id} is unknown")
        try:
            return act(uow, subscription_id, by, body.reason, action_id)
        except errors.ActionRefused as refusal:
            raise ApiError(409, refusal.reason, refusal.detail) from None

    subscription = ctx.act(change, "subscription")
    assert subscription.drift is not None
    return DriftActionResult(subscription_id=subscription_id, action=action, action_id=action_id, by=by,
                             seats=subscription.seats, drift=subscription.drift)


@router.post("/api/drift/{subscription_id}/resolve", tags=["reconciliation"], response_model=DriftActionResult)
def resolve(ctx: Ctx, by: User, subscription_id: str, body: Annotated[DriftAction, Body()]) -> DriftActionResult:
    """Record the vendor's count as coterm's seats (with who and why): rules and previews read it
    from now on. Refused (409) while a transfer is in flight on it, or when coterm's seats changed
    since the drift was found."""
    return _act(ctx, "resolve", subscription_id, by, body)


@router.post("/api/drift/{subscription_id}/explain", tags=["reconciliation"], response_model=DriftActionResult)
def explain(ctx: Ctx, by: User, subscription_id: str, body: Annotated[DriftAction, Body()]) -> DriftActionResult:
    """Keep coterm's seats and record why the vendor counts otherwise: the drift is no longer
    counted as open; a different pair of counts later is a new drift."""
    return _act(ctx, "explain", subscription_id, by, body)
