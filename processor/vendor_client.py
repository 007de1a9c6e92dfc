"""HTTP client for the vendor's transfer API (CONTRACT.md section 4).

Retries 5xx, timeouts and refused connections with exponential backoff, always with the
same Idempotency-Key and body; 409 means the vendor already has it and is a success.
"""

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


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


class Stopped(Exception):
    """The processor is stopping: the call stays requested and is sent again on restart."""


class VendorClient:
    def __init__(self, base_url: str, max_attempts: int = 8, backoff_initial_s: float = 0.2,
                 backoff_max_s: float = 10.0, timeout_s: float = 5.0, stop: threading.Event | None = None) -> None:
        self.url = base_url.rstrip("/") + "/v1/transfers"
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.stop = stop or threading.Event()

    def send(self, request: dict[str, Any]) -> VendorOutcome:
        body = json.dumps(request, sort_keys=True).encode()
        started = time.monotonic()
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            status, text = self._post(body, request["operation_id"])
            elapsed = int((time.monotonic() - started) * 1000)
            if status is not None and (200 <= status < 300 or status == 409):
                # Done (or done before): asking again would only repeat the answer.
                reference = _reference(text) or f"(HTTP {status} without a vendor_reference)"
                return VendorOutcome(True, attempt, elapsed, vendor_reference=reference)
            if status is not None and 400 <= status < 500:
                return VendorOutcome(False, attempt, elapsed, reason_code="VENDOR_REJECTED",
                                     detail=f"vendor answered HTTP {status}: {text[:500]}")
            last = f"HTTP {status}: {text[:200]}" if status is not None else text
            if attempt < self.max_attempts:
                delay = min(self.backoff_initial_s * 2 ** (attempt - 1), self.backoff_max_s)
                if self.stop.wait(delay):
                    raise Stopped()
        elapsed = int((time.monotonic() - started) * 1000)
        return VendorOutcome(False, self.max_attempts, elapsed, reason_code="VENDOR_UNAVAILABLE",
                             detail=f"no answer after {self.max_attempts} attempts; last: {last}")

    def _post(self, body: bytes, operation_id: str) -> tuple[int | None, str]:
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": operation_id})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            return None, f"{type(error).__name__}: {getattr(error, 'reason', error)}"


def _reference(text: str) -> str | None:
    try:
        value = json.loads(text).get("vendor_reference")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None
