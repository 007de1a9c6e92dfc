"""`coterm serve`: the query API, the staff actions and the dashboard, in one process."""

import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregates import commands, errors
from aggregates.application import KeptConflicting, Orders, UnitOfWork
from aggregates.transfer import Transfer
from contracts.fields import MAX_COUNT
from projections.api_orders import ApiError, orders_router
from projections.bulk_report import bulk_csv, bulk_view
from projections.health import Readiness, ReadModelCollector
from projections.projection import Projection
from projections.queries import BadQuery, Queries
from projections.staff import MIGRATE, PARTIAL_UPGRADE, REDRIVE, Staff
from projections.submit import NoBroker, OrdersOut

DASHBOARD = Path(__file__).parent / "static" / "dashboard.html"
MAX_BODY_BYTES = 64 * 1024  # an action's body is a reason of at most 500 characters


# Which privilege each staff write needs (projections/staff.py); any other write needs Partial Upgrade.
WRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/api/operations/[^/]+/(cancel|retry)$"), PARTIAL_UPGRADE),
    (re.compile(r"^/api/transfers$"), PARTIAL_UPGRADE),
    (re.compile(r"^/api/migrations$"), MIGRATE),
    (re.compile(r"^/api/bulk(/[^/]+/cancel)?$"), MIGRATE),
    (re.compile(r"^/api/deadletters/[^/]+/redrive$"), REDRIVE),
]


def privilege_for(path: str) -> str:
    return next((privilege for pattern, privilege in WRITES if pattern.match(path)), PARTIAL_UPGRADE)


class Action(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="why: recorded in the operation's history")


class ActionResult(BaseModel):
    operation_id: str
    action: str
    action_id: str
    by: str
    status: str


def _safe(name: str) -> str:
    """A name fit for a download's file name (a header value): ids may hold any printable character."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100]


def _fail(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(app: Orders, staff: Staff, refresh_s: float = 1.0, ready_max_lag_s: float = 30.0,
               orders: OrdersOut | None = None, clock: Callable[[], datetime] = _utc_now) -> FastAPI:
    """`orders`: where placed orders go (no broker: start buttons greyed, POSTs 503); `clock`: the
    wall clock that dates placed orders (their `occurred_at`) and the forms' what-ifs."""
    orders = orders or NoBroker()
    projection = Projection(app)
    queries = Queries(app, projection.tables)
    writing = threading.Lock()  # staff writes and dry runs: cached aggregates are shared, not copied

    def head() -> int:
        return app.process_recorder.max_notification_id() or 0

    readiness = Readiness(head, lambda: projection.caught_up_at, ready_max_lag_s)
    registry = CollectorRegistry()
    registry.register(ReadModelCollector(queries, head, lambda: projection.position))
    lock = threading.Lock()  # one projection catch-up at a time within this process
    stop = threading.Event()

    def catch_up() -> None:
        with lock:
            projection.run_to_end()

    def follow() -> None:
        # Read models stay current even when no `coterm run` shares this store.
        while not stop.wait(refresh_s):
            try:
                catch_up()
            except Exception:  # noqa: BLE001 - keep serving; the next round tries again
                pass

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        catch_up()
        follower = threading.Thread(target=follow, name="projection", daemon=True)
        follower.start()
        yield
        stop.set()
        follower.join(timeout=30)  # never leave it reading a store that is about to close

    # Swagger UI and ReDoc from assets in the package: /docs works without internet.
    api = FastAPIOffline(title="coterm", version="1", lifespan=lifespan, static_url="/static/docs",
                         description="Operations, customers, stats and actions of coterm, the order processor.")

    @api.exception_handler(ApiError)
    def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _fail(exc.status, exc.error, exc.detail)

    @api.exception_handler(BadQuery)
    def _bad_query(_: Request, exc: BadQuery) -> JSONResponse:
        return _fail(400, "BAD_PARAMETER", str(exc))

    @api.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _fail(400, "BAD_PARAMETER", detail)

    @api.exception_handler(StarletteHTTPException)
    def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {400: "BAD_PARAMETER", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return _fail(exc.status_code, error, str(exc.detail))

    @api.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        # Before routing and validation: a caller without a staff token learns nothing, not even
        # what is wrong with its body. Reads need a token only when a staff file is set.
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        action = request.method not in ("GET", "HEAD")
        if action or staff.enabled:
            authorization = request.headers.get("authorization", "")
            if not authorization.lower().startswith("bearer "):
                return _fail(401, "UNAUTHENTICATED", "send Authorization: Bearer <token> of a staff user")
            user = staff.user(authorization[7:].strip())
            if user is None:
                return _fail(401, "UNAUTHENTICATED", "the token belongs to no staff user")
            needed = privilege_for(request.url.path)
            if action and needed not in staff.privileges(user):
                return _fail(403, "FORBIDDEN", f"{user.name} lacks the {needed} privilege")
            request.state.user = user.name
        if action:
            size = request.headers.get("content-length")
            if size is None or not size.isdigit():
                return _fail(411, "LENGTH_REQUIRED", "send the body with a Content-Length")
            if int(size) > MAX_BODY_BYTES:
                return _fail(413, "BODY_TOO_LARGE", f"a body is at most {MAX_BODY_BYTES} bytes; this one is {size}")
        return await call_next(request)

    @api.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Alive: the process answers. Positions are shown when the store answers too."""
        try:
            return {"ok": True, "store_position": head(), "read_model_position": projection.position}
        except Exception as error:  # noqa: BLE001 - liveness must not depend on the store (that is /readyz)
            return {"ok": True, "store_error": f"{type(error).__name__}: {error}"[:300]}

    @api.get("/readyz", tags=["ops"], responses={503: {"description": "not ready, with the reason"}})
    def readyz() -> JSONResponse:
        """Ready: the store answers and the read models were at its head within COTERM_READY_MAX_LAG_S."""
        ready, body = readiness.check()
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus text format: operations by status and reason, dead letters, read-model lag."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    api.include_router(orders_router(app, queries, orders, clock, writing, catch_up))

    @api.get("/api/me", tags=["start work"])
    def me(request: Request) -> dict[str, Any]:
        """Who the token belongs to and what they may do; whether orders can be placed now, and if not, why."""
        authorization = request.headers.get("authorization", "")
        user = staff.user(authorization[7:].strip()) if authorization.lower().startswith("bearer ") else None
        why_not = orders.unavailable()
        return {"user": user.name if user else None,
                "privileges": sorted(staff.privileges(user)) if user else [],
                "staff_file": staff.enabled,
                "orders": {"available": why_not is None, "detail": why_not or "orders go to the orders topic"},
                "today": clock().date().isoformat()}

    @api.get("/api/customers", tags=["customers"])
    def list_customers(q: Annotated[str | None, Query(max_length=200, description="part of the id or the name, any case")] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> dict[str, Any]:
        """Customers by id, with their name, partner and how many subscriptions they hold."""
        return queries.list_customers(q, limit, cursor)

    def allowed(operation_id: str) -> dict[str, Any]:
        """Whether cancel and retry would pass now, by the very commands they run, recording nothing."""
        out: dict[str, Any] = {}
        for action in ("cancel", "retry"):
            with writing:
                uow = app.unit_of_work()
                try:
                    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
                    if transfer is None:
                        return {}
                    if action == "cancel":
                        commands.staff_cancel(uow, operation_id, "dry run", "dry run", "dry-run")
                    else:
                        commands.retry_transfer(uow, operation_id, "dry run", "dry run", "dry-run")
                    out[action] = {"allowed": True, "reason_code": None, "why_not": None}
                except errors.Refusal as refusal:
                    out[action] = {"allowed": False, "reason_code": refusal.reason, "why_not": refusal.detail}
                finally:
                    uow.discard()
        return out

    @api.get("/api/operations", tags=["operations"])
    def list_operations(
        status: str | None = None, customer: str | None = None, reason: str | None = None,
        since: Annotated[str | None, Query(description="ISO date or timestamp: created at or after")] = None,
        until: Annotated[str | None, Query(description="ISO date or timestamp: created before")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
    ) -> dict[str, Any]:
        return queries.list_operations(status, customer, reason, since, until, limit, cursor)

    @api.get("/api/operations/{operation_id}", tags=["operations"])
    def get_operation(operation_id: str) -> dict[str, Any]:
        found = queries.operation(operation_id)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"operation {operation_id} is unknown")
        found["allowed_actions"] = allowed(operation_id)
        return found

    @api.get("/api/transfers/preview", tags=["what-if"])
    def preview_transfer(
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
        target: dict[str, Any] = (
            {"kind": "new_subscription", "plan_id": target_plan, "term_months": term_months, "product_id": product}
            if target_plan is not None else {"kind": "existing_subscription", "subscription_id": target_subscription})
        if target_plan is None and (term_months is not None or product is not None):
            raise ApiError(400, "BAD_PARAMETER", "term_months and product describe a new plan: use them with target_plan")
        if target.get("product_id") is None:
            target.pop("product_id", None)
        return queries.preview_transfer(source, seats, target, on)

    @api.get("/api/migrations/preview", tags=["what-if"])
    def preview_migration(
        customer: Annotated[str, Query(min_length=1, max_length=200)],
        product: Annotated[list[str], Query(min_length=1, max_length=500, description="product_id; repeat for several")],
        on: Annotated[date | None, Query(description="request date (default: the business date coterm reached)")] = None,
    ) -> dict[str, Any]:
        """Per product, what a migration request would decide on that date, recording nothing."""
        return queries.preview_migration(customer, product, on)

    # After /api/migrations/preview: a route declared first wins.
    @api.get("/api/migrations/{request_id}", tags=["customers"])
    def get_migration(request_id: str) -> dict[str, Any]:
        """One migration request and its decision(s): what migrated (keys kept) and the bundle's new keys."""
        found = queries.migration(request_id)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"migration {request_id} is unknown, or not decided yet")
        return found

    @api.get("/api/customers/{customer_id}", tags=["customers"])
    def get_customer(customer_id: str, on: Annotated[date | None, Query(
            description="date for the migration what-if (default: the business date coterm reached)")] = None) -> dict[str, Any]:
        found = queries.customer(customer_id, on or queries.business_date())
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"customer {customer_id} is unknown")
        return found

    @api.get("/api/bulk", tags=["bulk migrations"])
    def list_bulks(partner: str | None = None, status: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> dict[str, Any]:
        """Bulk migrations, newest first, with their counts and next scheduled day."""
        return queries.list_bulks(partner, status, limit, cursor)

    @api.get("/api/bulk/{bulk_id}", tags=["bulk migrations"])
    def get_bulk(bulk_id: str, format: Annotated[str, Query(pattern="^(json|csv)$",
                 description="json (default), or csv: one row per customer and product")] = "json") -> Any:
        """One bulk migration: per customer and product, migrated, refused (why) or scheduled (for when)."""
        doc = queries.bulk_doc(bulk_id)
        if doc is None:
            raise ApiError(404, "NOT_FOUND", f"bulk {bulk_id} is unknown")
        if format == "csv":
            return PlainTextResponse(bulk_csv(doc), media_type="text/csv",
                                     headers={"content-disposition": f'attachment; filename="bulk-{_safe(bulk_id)}.csv"'})
        return bulk_view(doc)

    @api.get("/api/deadletters", tags=["dead letters"])
    def list_deadletters(
        reason: str | None = None,
        since: Annotated[str | None, Query(description="ISO date or timestamp: recorded at or after")] = None,
        until: Annotated[str | None, Query(description="ISO date or timestamp: recorded before")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
    ) -> dict[str, Any]:
        """Dead letters, newest first, with whether and how each was re-driven (`coterm redrive`)."""
        return queries.list_deadletters(reason, since, until, limit, cursor)

    @api.get("/api/deadletters/{deadletter_id}", tags=["dead letters"])
    def get_deadletter(deadletter_id: str) -> dict[str, Any]:
        """One dead letter with its original bytes: base64, and as text and JSON where they decode."""
        if not re.fullmatch(r"[0-9a-f]{32}", deadletter_id):
            raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown (ids are 32 hex digits)")
        found = queries.deadletter(deadletter_id)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"dead letter {deadletter_id} is unknown")
        return found

    @api.get("/api/stats", tags=["ops"])
    def stats() -> dict[str, Any]:
        return queries.stats()

    def act(operation_id: str, action: str, body: Action, request: Request) -> ActionResult:
        by: str = request.state.user  # `authenticate` let the request through: a privileged staff user
        action_id = str(uuid.uuid4())

        def change(uow: UnitOfWork) -> Transfer:
            transfer = uow.get(Transfer, Transfer.create_id(operation_id))
            if transfer is None:
                raise ApiError(404, "NOT_FOUND", f"operation {operation_id} is unknown")
            try:
                if action == "cancel":
                    commands.staff_cancel(uow, operation_id, by, body.reason, action_id)
                else:
                    commands.retry_transfer(uow, operation_id, by, body.reason, action_id)
            except errors.Refusal as refusal:
                raise ApiError(409, refusal.reason, refusal.detail) from None
            return transfer

        try:
            with writing:
                transfer = app.decide(change)  # the processor may change it meanwhile: then decide again
        except KeptConflicting:
            raise ApiError(409, "CONFLICT", "the operation kept changing; try again") from None
        catch_up()
        return ActionResult(operation_id=operation_id, action=action, action_id=action_id, by=by, status=transfer.status)

    @api.post("/api/operations/{operation_id}/cancel", tags=["actions"], response_model=ActionResult)
    def cancel(operation_id: str, body: Annotated[Action, Body()], request: Request) -> ActionResult:
        """Cancel an operation not yet sent to the vendor, or a parked vendor failure."""
        return act(operation_id, "cancel", body, request)

    @api.post("/api/operations/{operation_id}/retry", tags=["actions"], response_model=ActionResult)
    def retry(operation_id: str, body: Annotated[Action, Body()], request: Request) -> ActionResult:
        """Retry a vendor failure: a parked one (VENDOR_UNAVAILABLE) with the same key and body; one the
        vendor refused (VENDOR_REJECTED), once its cause is fixed, under a new key derived from the retry."""
        return act(operation_id, "retry", body, request)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return DASHBOARD.read_text()

    return api
