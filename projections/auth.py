"""Who may call what: every `/api` call's staff token, and each write's privilege.

A middleware rather than a route dependency on purpose: FastAPI parses a JSON body before it
runs dependencies, so a dependency would answer a caller without a token 400 for a malformed
body. Here a caller without a valid token learns nothing (401), a user without the privilege
403, before a body is read. Reads need a token only when a staff file is set; writes always.
"""

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from projections.staff import MIGRATE, PARTIAL_UPGRADE, REDRIVE, Staff, StaffUser

MAX_BODY_BYTES = 64 * 1024  # the largest body is a corrected message for a re-drive; actions hold a reason

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


def bearer_user(staff: Staff, request: Request) -> StaffUser | None:
    """The staff user whose token the request carries, if any."""
    authorization = request.headers.get("authorization", "")
    return staff.user(authorization[7:].strip()) if authorization.lower().startswith("bearer ") else None


def fail(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def install(api: FastAPI, staff: Staff) -> None:
    @api.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        write = request.method not in ("GET", "HEAD")
        if write or staff.enabled:
            if not request.headers.get("authorization", "").lower().startswith("bearer "):
                return fail(401, "UNAUTHENTICATED", "send Authorization: Bearer <token> of a staff user")
            user = bearer_user(staff, request)
            if user is None:
                return fail(401, "UNAUTHENTICATED", "the token belongs to no staff user")
            needed = privilege_for(request.url.path)
            if write and needed not in staff.privileges(user):
                return fail(403, "FORBIDDEN", f"{user.name} lacks the {needed} privilege")
            request.state.user = user.name
        if write:
            size = request.headers.get("content-length")
            if size is None or not size.isdigit():
                return fail(411, "LENGTH_REQUIRED", "send the body with a Content-Length")
            if int(size) > MAX_BODY_BYTES:
                return fail(413, "BODY_TOO_LARGE", f"a body is at most {MAX_BODY_BYTES} bytes; this one is {size}")
        return await call_next(request)
