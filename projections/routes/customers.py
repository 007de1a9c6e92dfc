"""Customers and what-ifs: the list, one customer, a migration's decision, and the previews of a
transfer or a migration on a date (recording nothing). Also who is asking (`/api/me`)."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from contracts.fields import MAX_COUNT
from projections.oidc import ProviderUnavailable
from projections.routes.context import ApiError, Ctx, Id, ProductIds, Scope, Who, not_found

router = APIRouter()


@router.get("/api/me", tags=["start work"])
def me(ctx: Ctx, who: Who) -> dict[str, Any]:
    """Who the token belongs to, their roles, tenant and privileges; whether orders can be placed
    now, and if not, why."""
    why_not = ctx.orders.unavailable()
    tenant = who.tenant if who else None
    return {"user": who.name if who else None, "roles": list(who.roles) if who else [],
            "privileges": sorted(who.privileges) if who else [],
            "staff": tenant is None,
            "tenant": {"kind": tenant.kind, "id": tenant.id} if tenant else None,
            "staff_file": ctx.staff.enabled,
            "orders": {"available": why_not is None, "detail": why_not or "orders go to the orders topic"},
            "today": ctx.clock().date().isoformat()}


@router.get("/api/auth", tags=["start work"])
def sign_in(ctx: Ctx) -> dict[str, Any]:
    """How to sign in: with a staff token, and, when an issuer is configured, through it
    (Authorization Code with PKCE, a public client: nothing here is secret)."""
    oidc = None
    if ctx.issuer is not None:
        try:
            oidc = ctx.issuer.public()
        except ProviderUnavailable:
            raise ApiError(503, "IDENTITY_PROVIDER_UNAVAILABLE", "the identity provider cannot be reached; try again") from None
    return {"staff_tokens": ctx.staff.enabled, "oidc": oidc}


@router.get("/api/customers", tags=["customers"])
def list_customers(ctx: Ctx, q: Annotated[str | None, Query(max_length=200, description="part of the id or the name, any case")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
                   *, tenant: Scope) -> dict[str, Any]:
    """Customers by id, with their name, partner and how many subscriptions they hold (a partner's
    or distributor's user: theirs only)."""
    return ctx.queries.list_customers(q, limit, cursor, tenant)


@router.get("/api/customers/{customer_id}", tags=["customers"])
def get_customer(ctx: Ctx, tenant: Scope, customer_id: str, on: Annotated[date | None, Query(
        description="date for the migration what-if (default: the business date coterm reached)")] = None) -> dict[str, Any]:
    found = ctx.queries.customer(customer_id, on or ctx.queries.business_date(), tenant)
    if found is None:
        raise not_found("customer", customer_id)
    return found


@router.get("/api/transfers/preview", tags=["what-if"])
def preview_transfer(
    ctx: Ctx,
    tenant: Scope,
    source: Annotated[str, Query(min_length=1, max_length=200, description="source subscription_id")],
    seats: Annotated[int, Query(ge=1, le=MAX_COUNT, description="seats to move")],
    target_plan: Annotated[str | None, Query(max_length=200, description="into a new co-termed subscription of this plan")] = None,
    target_subscription: Annotated[str | None, Query(max_length=200, description="or into this existing subscription")] = None,
    term_months: Annotated[int | None, Query(ge=1, le=MAX_COUNT, description="the new plan's term (default: the source's)")] = None,
    product: Annotated[str | None, Query(max_length=200, description="the new plan's product (default: the source's)")] = None,
    on: Annotated[date | None, Query(description="transfer date (default: the business date coterm reached)")] = None,
) -> dict[str, Any]:
    """The decision a downgrade and upgrade pair would get on that date, recording nothing: the first
    reason code with its facts, every other rule that would refuse too, and the first date it would pass."""
    if (target_plan is None) == (target_subscription is None):
        raise ApiError(400, "BAD_PARAMETER", "give exactly one of target_plan and target_subscription")
    if target_plan is None and (term_months is not None or product is not None):
        raise ApiError(400, "BAD_PARAMETER", "term_months and product describe a new plan: use them with target_plan")
    for subscription in filter(None, (source, target_subscription)):
        if not ctx.queries.visible_subscription(subscription, tenant):
            raise not_found("subscription", subscription)
    target: dict[str, Any] = (
        {"kind": "new_subscription", "plan_id": target_plan, "term_months": term_months}
        if target_plan is not None else {"kind": "existing_subscription", "subscription_id": target_subscription})
    if product is not None:
        target["product_id"] = product
    return ctx.queries.preview_transfer(source, seats, target, on)


@router.get("/api/migrations/preview", tags=["what-if"])
def preview_migration(
    ctx: Ctx,
    tenant: Scope,
    customer: Id,
    product: ProductIds,
    on: Annotated[date | None, Query(description="request date (default: the business date coterm reached)")] = None,
) -> dict[str, Any]:
    """Per product, what a migration request would decide on that date, recording nothing."""
    if tenant is not None and not ctx.queries.visible_customer(customer, tenant):
        raise not_found("customer", customer)
    return ctx.queries.preview_migration(customer, product, on)


# After /api/migrations/preview: a route declared first wins.
@router.get("/api/migrations/{request_id}", tags=["customers"])
def get_migration(ctx: Ctx, tenant: Scope, request_id: str) -> dict[str, Any]:
    """One migration request and its decision(s): what migrated (keys kept) and the bundle's new keys."""
    found = ctx.queries.migration(request_id, tenant)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"migration {request_id} is unknown, or not decided yet")
    return found
