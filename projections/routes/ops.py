"""Liveness, readiness, metrics, stats, and the dashboard page itself."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projections.routes.context import Ctx, Scope

DASHBOARD = Path(__file__).parent.parent / "static" / "dashboard.html"
router = APIRouter()


@router.get("/healthz", tags=["ops"])
def healthz(ctx: Ctx) -> dict[str, Any]:
    """Alive: the process answers. Positions are shown when the store answers too."""
    try:
        return {"ok": True, "store_position": ctx.head(), "read_model_position": ctx.projection.position}
    except Exception as error:  # noqa: BLE001 - liveness must not depend on the store (that is /readyz)
        return {"ok": True, "store_error": f"{type(error).__name__}: {error}"[:300]}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "not ready, with the reason"}})
def readyz(ctx: Ctx) -> JSONResponse:
    """Ready: the store answers and the read models were at its head within COTERM_READY_MAX_LAG_S."""
    ready, body = ctx.readiness.check()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
def metrics(ctx: Ctx) -> Response:
    """Prometheus text format: operations by status and reason, dead letters, read-model lag."""
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/stats", tags=["ops"])
def stats(ctx: Ctx, tenant: Scope) -> dict[str, Any]:
    """Counts and charts: a partner's or distributor's user sees its own customers' only."""
    return ctx.queries.stats(tenant)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> str:
    return DASHBOARD.read_text()
