"""What every route needs, as one object on the app (`request.app.state.api`), reached through
dependencies: the store, the read models and their queries, where placed orders go, the clock."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from prometheus_client import CollectorRegistry

from aggregates.application import KeptConflicting, Orders, UnitOfWork
from projections.health import Readiness
from projections.identity import Caller, Tenant
from projections.oidc import Issuer
from projections.projection import Projection
from projections.queries import Queries
from projections.staff import Staff
from projections.submit import OrdersOut

T = TypeVar("T")


class ApiError(Exception):
    """Answered as `{"error": error, "detail": detail}` with `status`."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        self.status, self.error, self.detail = status, error, detail


@dataclass
class Api:
    app: Orders
    staff: Staff
    projection: Projection
    queries: Queries
    orders: OrdersOut
    clock: Callable[[], datetime]  # dates placed orders (`occurred_at`) and the forms' what-ifs
    readiness: Readiness
    registry: CollectorRegistry
    issuer: Issuer | None = None  # COTERM_OIDC_ISSUER's, when set
    # Staff writes and dry runs: cached aggregates are shared between requests, not copied.
    writing: threading.Lock = field(default_factory=threading.Lock)
    _projecting: threading.Lock = field(default_factory=threading.Lock)

    def catch_up(self) -> None:
        """Read models up to the store's head (one catch-up at a time within this process)."""
        with self._projecting:
            self.projection.run_to_end()

    def head(self) -> int:
        return self.app.process_recorder.max_notification_id() or 0

    def act(self, change: Callable[[UnitOfWork], T], what: str) -> T:
        """A staff action's change, decided on fresh state (the processor may change the same
        aggregate meanwhile: then it is decided again), then the read models brought up to it."""
        try:
            with self.writing:
                result = self.app.decide(change)
        except KeptConflicting:
            raise ApiError(409, "CONFLICT", f"the {what} kept changing; try again") from None
        self.catch_up()
        return result


def _api(request: Request) -> Api:
    return request.app.state.api  # type: ignore[no-any-return]


def _caller(request: Request) -> Caller | None:
    """Who `authenticate` (projections/auth.py) let through: None only for a read without any
    staff file or issuer configured (every tenant, as provider staff)."""
    return getattr(request.state, "caller", None)


def _user(request: Request) -> str:
    """The caller of a write (`authenticate` lets no write through without one)."""
    return request.state.caller.name  # type: ignore[no-any-return]


def _tenant(request: Request) -> Tenant | None:
    """The tenant every read and write of this request is confined to (None: provider staff)."""
    caller = _caller(request)
    return caller.tenant if caller is not None else None


Ctx = Annotated[Api, Depends(_api)]
User = Annotated[str, Depends(_user)]
Who = Annotated[Caller | None, Depends(_caller)]
Scope = Annotated[Tenant | None, Depends(_tenant)]


def not_found(what: str, ident: str) -> ApiError:
    """One answer for an id that does not exist and an id of another tenant."""
    return ApiError(404, "NOT_FOUND", f"{what} {ident} is unknown")

# Query parameters the what-ifs share.
Id = Annotated[str, Query(min_length=1, max_length=200)]
ProductIds = Annotated[list[str], Query(min_length=1, max_length=500, description="product_id; repeat for several")]
