"""Bulk migrations: the list, a preview of one (recording nothing), and one with its report."""

import re
from datetime import date, datetime
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from aggregates import bulk_commands
from aggregates.context import Context
from contracts.fields import MAX_COUNT
from projections.bulk_report import bulk_csv, bulk_view
from projections.identity import Tenant
from projections.queries import Queries
from projections.routes.context import Ctx, Id, ProductIds, Scope, not_found

router = APIRouter()


def _safe(name: str) -> str:
    """A name fit for a download's file name (a header value): ids may hold any printable character."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100]


@router.get("/api/bulk", tags=["bulk migrations"])
def list_bulks(ctx: Ctx, tenant: Scope, partner: str | None = None, status: str | None = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> dict[str, Any]:
    """Bulk migrations, newest first, with their counts and next scheduled day."""
    return ctx.queries.list_bulks(partner, status, limit, cursor, tenant)


def tenant_bulk_customers(queries: Queries, tenant: Tenant, partner: str, customers: list[str] | None) -> list[str]:
    """The customers a tenant's bulk for `partner` covers: the listed ones, each of them the
    tenant's (else 404, as for an unknown id), or all of the tenant's customers of that partner.
    A distributor's "all" is expanded here, at placing, into the list of its own: the processor
    would otherwise take every customer of the reseller, the distributor's or not."""
    if tenant.kind == "partner" and partner != tenant.id:
        raise not_found("partner", partner)
    mine = queries.tenant_customers(tenant, partner=partner)
    if tenant.kind == "distributor" and not mine:
        raise not_found("partner", partner)
    if customers is None:
        return mine
    own = set(mine)  # once: a bulk names up to 50,000 customers
    outside = [c for c in dict.fromkeys(customers) if c not in own]
    if outside:
        raise not_found("customer", outside[0])
    return customers


# Before /api/bulk/{bulk_id}: a route declared first wins.
@router.get("/api/bulk/preview", tags=["what-if"])
def preview_bulk(
    ctx: Ctx,
    tenant: Scope,
    partner: Id,
    product: ProductIds,
    customer: Annotated[list[str] | None, Query(max_length=MAX_COUNT, description="customer_id; repeat, or omit for all of the partner's")] = None,
    on: Annotated[date | None, Query(description="request date (default: today, the date an order placed now carries)")] = None,
) -> dict[str, Any]:
    """What a bulk migration requested on that date would decide, recording nothing: how many
    products migrate at once, how many are scheduled (by date) and how many are refused (by reason)."""
    day = on or ctx.clock().date()
    if tenant is not None:
        customer = tenant_bulk_customers(ctx.queries, tenant, partner, customer)
    request_body = {"partner_id": partner, "requested_by": "preview", "product_ids": list(dict.fromkeys(product)),
                    "customer_ids": customer or None, "all_customers_of_partner": not customer}
    at = datetime.combine(day, datetime.min.time(), tzinfo=ctx.clock().tzinfo)
    as_of = Context(message_id="preview", occurred_at=at, recorded_at=at)
    with ctx.writing:  # the bulk's own rules on a unit of work that is never recorded
        uow = ctx.app.unit_of_work()
        try:
            bulk = bulk_commands.request_bulk(uow, as_of, "preview-" + uuid4().hex, request_body)
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



@router.get("/api/bulk/{bulk_id}", tags=["bulk migrations"])
def get_bulk(ctx: Ctx, tenant: Scope, bulk_id: str, format: Annotated[str, Query(pattern="^(json|csv)$",
             description="json (default), or csv: one row per customer and product")] = "json") -> Any:
    """One bulk migration: per customer and product, migrated, refused (why) or scheduled (for when)."""
    doc = ctx.queries.bulk_doc(bulk_id, tenant)
    if doc is None:
        raise not_found("bulk", bulk_id)
    if format == "csv":
        return PlainTextResponse(bulk_csv(doc), media_type="text/csv",
                                 headers={"content-disposition": f'attachment; filename="bulk-{_safe(bulk_id)}.csv"'})
    return bulk_view(doc)
