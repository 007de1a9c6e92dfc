"""Who may call what: every route names who may call it, and each call's caller is found first.

A middleware rather than a route dependency on purpose: FastAPI parses a JSON body before it
runs dependencies, so a dependency would answer a caller without a token 400 for a malformed
body. Here a caller without a valid token learns nothing (401), a caller without the right 403,
before a body is read.

Deny by default: `ACCESS` names every route; `install` refuses to start an app with a route it
does not name (and with a name no route has), so a new route cannot slip through unguarded.
Callers come from the staff file (`staff.py`) or, with COTERM_OIDC_ISSUER, from the issuer's
bearer JWTs (`oidc.py`). Reads need a caller once either is configured; writes always.
"""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from projections.identity import Caller, Refused, caller_for
from projections.oidc import InvalidToken, Issuer, ProviderUnavailable, claim
from projections.staff import MIGRATE, PARTIAL_UPGRADE, RECONCILE, REDRIVE, Staff

log = structlog.get_logger("coterm.auth")

MAX_BODY_BYTES = 64 * 1024  # the largest body is a corrected message for a re-drive; actions hold a reason

PUBLIC = "public"  # no caller needed: probes, the page, the API's own description
READ = "read"  # any caller; every answer is confined to the caller's tenant (projections/tenancy.py)
STAFF = "staff"  # provider staff only (403 for a tenant's user)
# Writes name the privilege they need (staff.py); partners' and distributors' administrators hold only MIGRATE.
ACCESS: dict[str, str] = {
    "GET /": PUBLIC,
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /metrics": STAFF,  # a Prometheus scrape without a token is let through: see `_metrics`
    "GET /api/auth": PUBLIC,  # how the dashboard signs in: nothing secret
    "GET /api/me": READ,
    "GET /api/stats": READ,
    "GET /api/customers": READ,
    "GET /api/customers/{customer_id}": READ,
    "GET /api/transfers/preview": READ,
    "GET /api/migrations/preview": READ,
    "GET /api/migrations/{request_id}": READ,
    "GET /api/operations": READ,
    "GET /api/operations/{operation_id}": READ,
    "GET /api/bulk": READ,
    "GET /api/bulk/preview": READ,
    "GET /api/bulk/{bulk_id}": READ,
    "GET /api/deadletters": STAFF,
    "GET /api/deadletters/{deadletter_id}": STAFF,
    "POST /api/operations/{operation_id}/cancel": PARTIAL_UPGRADE,
    "POST /api/operations/{operation_id}/retry": PARTIAL_UPGRADE,
    "POST /api/transfers": PARTIAL_UPGRADE,
    "POST /api/migrations": MIGRATE,
    "POST /api/bulk": MIGRATE,
    "POST /api/bulk/{bulk_id}/cancel": MIGRATE,
    "POST /api/deadletters/{deadletter_id}/redrive": REDRIVE,
    "GET /api/drift": STAFF,  # the vendor's counts and reconciliation: provider staff's
    "GET /api/drift/{subscription_id}": STAFF,
    "GET /api/reconciliation": STAFF,
    "GET /api/vendor": STAFF,
    "POST /api/drift/{subscription_id}/resolve": RECONCILE,
    "POST /api/drift/{subscription_id}/explain": RECONCILE,
}
# The API's own description and its assets (FastAPI adds them itself) are public.
DOCS_PREFIXES = ("/docs", "/redoc", "/openapi.json", "/static/docs")


class UnguardedRoute(RuntimeError):
    """A route that `ACCESS` does not name: the app refuses to start."""


def leaf_routes(routes: list[Any]) -> list[Any]:
    """The app's endpoints with their methods. FastAPI keeps an included router as one entry
    (`original_router` holds its routes); coterm's routers have no prefix, so their paths are whole."""
    leaves = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            leaves += leaf_routes(inner.routes)
        elif getattr(route, "methods", None):
            leaves.append(route)
    return leaves


def route_names(api: FastAPI) -> list[str]:
    return [f"{method} {route.path}" for route in leaf_routes(api.routes) if not route.path.startswith(DOCS_PREFIXES)
            for method in sorted(route.methods - {"HEAD"})]


def check_every_route_named(api: FastAPI) -> None:
    names = route_names(api)
    unnamed = [n for n in names if n not in ACCESS]
    if unnamed:
        raise UnguardedRoute(f"{unnamed[0]} names nobody who may call it: add it to ACCESS in projections/auth.py")
    stale = sorted(set(ACCESS) - set(names))
    if stale:
        raise UnguardedRoute(f"ACCESS names {stale[0]}, which is no route: remove it")


def fail(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class Identities:
    """Turns a bearer token into a `Caller`: a staff-file user's token, else the issuer's JWT."""

    def __init__(self, staff: Staff, issuer: Issuer | None) -> None:
        self.staff = staff
        self.issuer = issuer

    @property
    def enabled(self) -> bool:
        return self.staff.enabled or self.issuer is not None

    def caller(self, token: str) -> Caller:
        """Raises InvalidToken (401), Refused (403) or ProviderUnavailable (503)."""
        user = self.staff.user(token)
        if user is not None:
            return self.staff.caller(user)
        if self.issuer is None:
            raise InvalidToken("the token belongs to no staff user")
        claims = self.issuer.claims(token)
        config = self.issuer.config
        roles = claim(claims, config.roles_claim)
        name = claims.get("preferred_username") or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise InvalidToken("the token names no user (preferred_username or sub)")
        roles = [roles] if isinstance(roles, str) else roles  # one role may come as a plain string
        return caller_for(name, roles if isinstance(roles, list) else [], _one(claim(claims, config.partner_claim)),
                          _one(claim(claims, config.distributor_claim)), self.staff.roles)


def _one(value: Any) -> str | None:
    """A tenant claim: a string, or a list of exactly one (Keycloak maps user attributes so)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) and value else None


def bearer(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


def access_of(routes: list[Any], request: Request) -> str:
    """Who may call the route this request reaches; a path that reaches no route needs a caller
    (READ): a 404 is told only to someone signed in."""
    path = request.url.path
    if path.startswith(DOCS_PREFIXES):
        return PUBLIC
    for route in routes:
        if route.matches(request.scope)[0] == Match.FULL:
            return ACCESS[f"{request.method if request.method != 'HEAD' else 'GET'} {route.path}"]
    return READ


def install(api: FastAPI, identities: Identities) -> None:
    check_every_route_named(api)
    routes = leaf_routes(api.routes)  # fixed from here on: found once, not per request

    @api.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        access = access_of(routes, request)
        write = request.method not in ("GET", "HEAD")
        request.state.caller = None
        token = bearer(request)
        if access == STAFF and request.url.path == "/metrics" and token is None:
            return await call_next(request)  # `_metrics`: the scraper sends no token
        if access != PUBLIC and (write or identities.enabled or token is not None):
            if token is None:
                return fail(401, "UNAUTHENTICATED", "send Authorization: Bearer <token>")
            try:
                caller = await run_in_threadpool(identities.caller, token)  # may fetch the issuer's keys
            except InvalidToken as error:
                return fail(401, "UNAUTHENTICATED", str(error))
            except Refused as error:
                return fail(403, "FORBIDDEN", str(error))
            except ProviderUnavailable as error:
                log.warning("auth.issuer_unavailable", detail=str(error))
                return fail(503, "IDENTITY_PROVIDER_UNAVAILABLE", "the identity provider cannot be reached; try again")
            if access == STAFF and not caller.staff:
                return fail(403, "FORBIDDEN", "provider staff only")
            if access not in (READ, STAFF) and access not in caller.privileges:
                return fail(403, "FORBIDDEN", f"{caller.name} lacks the {access} privilege")
            request.state.caller = caller
        if write:
            size = request.headers.get("content-length")
            if size is None or not size.isdigit():
                return fail(411, "LENGTH_REQUIRED", "send the body with a Content-Length")
            if int(size) > MAX_BODY_BYTES:
                return fail(413, "BODY_TOO_LARGE", f"a body is at most {MAX_BODY_BYTES} bytes; this one is {size}")
        return await call_next(request)
