"""Operations (seat transfers): the list, one with its timeline, and the staff actions on it."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from aggregates import errors, transfer_commands
from aggregates.application import UnitOfWork
from aggregates.transfer import Transfer
from projections.routes.context import Api, ApiError, Ctx, Scope, User, not_found

router = APIRouter()
ACTIONS = ("cancel", "retry")


class Action(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="why: recorded in the operation's history")


class ActionResult(BaseModel):
    operation_id: str
    action: str
    action_id: str
    by: str
    status: str


@router.get("/api/operations", tags=["operations"])
def list_operations(
    ctx: Ctx, tenant: Scope, status: str | None = None, customer: str | None = None, reason: str | None = None,
    since: Annotated[str | None, Query(description="ISO date or timestamp: created at or after")] = None,
    until: Annotated[str | None, Query(description="ISO date or timestamp: created before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
) -> dict[str, Any]:
    return ctx.queries.list_operations(status, customer, reason, since, until, limit, cursor, tenant)


@router.get("/api/operations/{operation_id}", tags=["operations"])
def get_operation(ctx: Ctx, tenant: Scope, operation_id: str) -> dict[str, Any]:
    """The operation, its timeline, what it waits for, and `allowed_actions`: what cancel and retry
    would answer now (provider staff's actions: never allowed to a partner's or distributor's user)."""
    found = ctx.queries.operation(operation_id, tenant)
    if found is None:
        raise not_found("operation", operation_id)
    found["allowed_actions"] = {action: _dry_run(ctx, action, operation_id) if tenant is None else
                                {"allowed": False, "reason_code": None, "why_not": "provider staff only"}
                                for action in ACTIONS}
    return found


def _dry_run(ctx: Api, action: str, operation_id: str) -> dict[str, Any]:
    """The very command the action runs, on a unit of work that is thrown away."""
    with ctx.writing:
        uow = ctx.app.unit_of_work()
        try:
            transfer_commands.staff_action(uow, action, operation_id, "dry run", "dry run", "dry-run")
            return {"allowed": True, "reason_code": None, "why_not": None}
        except errors.Refusal as refusal:
            return {"allowed": False, "reason_code": refusal.reason, "why_not": refusal.detail}
        finally:
            uow.discard()


def _act(ctx: Api, action: str, operation_id: str, by: str, body: Action) -> ActionResult:
    action_id = str(uuid.uuid4())

    def change(uow: UnitOfWork) -> Transfer:
        if uow.get(Transfer, Transfer.create_id(operation_id)) is None:
            raise ApiError(404, "NOT_FOUND", f"operation {operation_id} is unknown")
        try:
            return transfer_commands.staff_action(uow, action, operation_id, by, body.reason, action_id)
        except errors.Refusal as refusal:
            raise ApiError(409, refusal.reason, refusal.detail) from None

    transfer = ctx.act(change, "operation")
    return ActionResult(operation_id=operation_id, action=action, action_id=action_id, by=by, status=transfer.status)


@router.post("/api/operations/{operation_id}/cancel", tags=["actions"], response_model=ActionResult)
def cancel(ctx: Ctx, by: User, operation_id: str, body: Annotated[Action, Body()]) -> ActionResult:
    """Cancel an operation not yet sent to the vendor, or a parked vendor failure (its seats are freed)."""
    return _act(ctx, "cancel", operation_id, by, body)


@router.post("/api/operations/{operation_id}/retry", tags=["actions"], response_model=ActionResult)
def retry(ctx: Ctx, by: User, operation_id: str, body: Annotated[Action, Body()]) -> ActionResult:
    """Retry a vendor failure: a parked one (VENDOR_UNAVAILABLE) with the same key and body; one the
    vendor refused (VENDOR_REJECTED), once its cause is fixed, under a new key derived from the retry."""
    return _act(ctx, "retry", operation_id, by, body)
