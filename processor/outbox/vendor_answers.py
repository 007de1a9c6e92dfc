"""What a vendor's answer to a transfer call settles (CONTRACT.md section 4): the rules every
attempt is judged by, on whichever thread it ran."""

import json
from dataclasses import dataclass

import structlog

log = structlog.get_logger("coterm.vendor")
RETRIED_4XX = (408, 429)  # contract 1.3: throttled or too slow, not refused


@dataclass(frozen=True)
class VendorOutcome:
    ok: bool
    attempts: int
    latency_ms: int
    vendor_reference: str | None = None
    reason_code: str | None = None  # VENDOR_REJECTED | VENDOR_UNAVAILABLE
    detail: str = ""

    @property
    def retryable(self) -> bool:
        return self.reason_code == "VENDOR_UNAVAILABLE"


def judged(status: int | None, text: str, headers: dict[str, str], attempt: int, elapsed_ms: int,
           operation_id: str) -> VendorOutcome | None:
    """The outcome this answer settles, or None: ask again (5xx, 429, 408, no answer).
    2xx and 409 (the vendor already has it) are done; a 3xx is no answer of the API's (the call
    is parked at once with one clear line: COTERM_VENDOR_URL is wrong); another 4xx is a refusal."""
    if status is not None and (200 <= status < 300 or status == 409):
        # Done (or done before): asking again would only repeat the answer.
        reference = _reference(text) or f"(HTTP {status} without a vendor_reference)"
        return VendorOutcome(True, attempt, elapsed_ms, vendor_reference=reference)
    if status is not None and 300 <= status < 400:
        detail = (f"vendor answered HTTP {status} (to {headers.get('location') or 'no Location'}): "
                  "COTERM_VENDOR_URL is not the vendor's API; fix it, then retry the call")
        log.error("vendor.redirected", operation_id=operation_id, status=status, location=headers.get("location"),
                  detail=detail)
        return VendorOutcome(False, attempt, elapsed_ms, reason_code="VENDOR_UNAVAILABLE", detail=detail)
    if status is not None and 400 <= status < 500 and status not in RETRIED_4XX:
        return VendorOutcome(False, attempt, elapsed_ms, reason_code="VENDOR_REJECTED",
                             detail=f"vendor answered HTTP {status}: {text[:500]}")
    return None


def given_up(attempts: int, elapsed_ms: int, last: str) -> VendorOutcome:
    return VendorOutcome(False, attempts, elapsed_ms, reason_code="VENDOR_UNAVAILABLE",
                         detail=f"no answer after {attempts} attempts; last: {last}")


def _reference(text: str) -> str | None:
    try:
        value = json.loads(text).get("vendor_reference")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None
