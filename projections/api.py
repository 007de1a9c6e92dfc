"""`coterm serve`: the query API, the staff actions, starting work, and the dashboard, in one process.

`create_app` only assembles: the shared context (`routes/context.py`), authentication
(`auth.py`), the error shape, the read models' follower thread, and one router per concern
(`routes/`).
"""

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregates.application import Orders
from projections import auth
from projections.auth import Identities
from projections.health import Readiness, ReadinessCollector, ReadModelCollector
from projections.projection import Projection
from projections.oidc import Issuer
from projections.queries import BadQuery, Queries
from projections.routes import bulk, customers, deadletters, operations, ops, vendor
from projections.routes import orders as start_work
from projections.routes.context import Api, ApiError
from projections.staff import Staff
from projections.submit import NoBroker, OrdersOut

ROUTERS = (ops, operations, customers, bulk, deadletters, start_work, vendor)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(app: Orders, staff: Staff, refresh_s: float = 1.0, ready_max_lag_s: float = 30.0,
               orders: OrdersOut | None = None, clock: Callable[[], datetime] = _utc_now,
               store_problem: Callable[[], str | None] = lambda: None, issuer: Issuer | None = None) -> FastAPI:
    """`orders`: where placed orders go (no broker: start buttons greyed, POSTs 503); `clock`: the
    wall clock that dates placed orders (their `occurred_at`) and the forms' what-ifs;
    `store_problem`: a reason `/readyz` answers 503 (e.g. the store file was replaced); `issuer`:
    the OpenID Connect issuer whose tokens `/api` accepts beside the staff file's."""
    projection = Projection(app)
    queries = Queries(app, projection.tables)
    registry = CollectorRegistry()
    ctx = Api(app=app, staff=staff, projection=projection, queries=queries,
              orders=orders or NoBroker(), clock=clock, registry=registry, issuer=issuer,
              readiness=Readiness(lambda: ctx.head(), lambda: projection.caught_up_at, ready_max_lag_s,
                                  extra=store_problem))
    registry.register(ReadModelCollector(queries, ctx.head, lambda: projection.position))
    registry.register(ReadinessCollector(ctx.readiness))
    stop = threading.Event()

    def follow() -> None:
        # Read models stay current even when no `coterm run` shares this store.
        while not stop.wait(refresh_s):
            try:
                ctx.catch_up()
            except Exception:  # noqa: BLE001, S110 - keep serving; the next round tries again
                pass

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ctx.catch_up()
        follower = threading.Thread(target=follow, name="projection", daemon=True)
        follower.start()
        yield
        stop.set()
        follower.join(timeout=30)  # never leave it reading a store that is about to close

    # Swagger UI and ReDoc from assets in the package: /docs works without internet.
    api = FastAPIOffline(title="coterm", version="1", lifespan=lifespan, static_url="/static/docs",
                         description="Operations, customers, stats, actions and orders of coterm, the order processor.")
    api.state.api = ctx
    _errors(api)
    for module in ROUTERS:
        api.include_router(module.router)
    auth.install(api, Identities(staff, issuer))  # after the routes: it checks that each names who may call it
    return api


def _errors(api: FastAPI) -> None:
    """Every error is `{"error": CODE, "detail": why}`."""
    @api.exception_handler(ApiError)
    def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return auth.fail(exc.status, exc.error, exc.detail)

    @api.exception_handler(BadQuery)
    def _bad_query(_: Request, exc: BadQuery) -> JSONResponse:
        return auth.fail(400, "BAD_PARAMETER", str(exc))

    @api.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return auth.fail(400, "BAD_PARAMETER", detail)

    @api.exception_handler(StarletteHTTPException)
    def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {400: "BAD_PARAMETER", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return auth.fail(exc.status_code, error, str(exc.detail))
