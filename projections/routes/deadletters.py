"""Dead letters: the list and one with its original bytes (re-driving one is in `orders.py`)."""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query

from projections.routes.context import ApiError, Ctx

router = APIRouter()


@router.get("/api/deadletters", tags=["dead letters"])
def list_deadletters(
    ctx: Ctx, reason: str | None = None,
    since: Annotated[str | None, Query(description="ISO date or timestamp: recorded at or after")] = None,
    until: Annotated[str | None, Query(description="ISO date or timestamp: recorded before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
) -> dict[str, Any]:
    """Dead letters, newest first, with whether and how each was re-driven."""
    return ctx.queries.list_deadletters(reason, since, until, limit, cursor)


@router.get("/api/deadletters/{deadletter_id}", tags=["dead letters"])
def get_deadletter(ctx: Ctx, deadletter_id: str) -> dict[str, Any]:
    """One dead letter with its original bytes: base64, and as text and JSON where they decode."""
    if not re.fullmatch(r"[0-9a-f]{32}", deadletter_id):
        raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown (ids are 32 hex digits)")
    found = ctx.queries.deadletter(deadletter_id)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown")
    return found
