"""HTTP client for the vendor's transfer API (CONTRACT.md section 4).

Retries 5xx, 429 (throttled), 408 (too slow for the vendor), timeouts and refused connections
with full-jitter exponential backoff, never sooner than the answer's `Retry-After`, always with
the same Idempotency-Key and body (`throttle.py`); 409 means the vendor already has it and is a
success; other 4xx are refusals. A 3xx is no answer of the API's: COTERM_VENDOR_URL points
elsewhere, so the call is parked at once with one clear log line rather than retried.
Every worker of the process shares one `Limiter`: while the vendor throttles, fewer calls go out.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import structlog

from processor import tracing
from processor.outbox.http_transport import Answer, Transport
from processor.outbox.throttle import Limiter, delay_s, retry_after_s

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


class Stopped(Exception):
    """The processor is stopping: the call stays requested and is sent again on restart."""


class VendorUnreachable(Exception):
    """A read got no answer (or only 5xx, 429, 408) after every attempt."""


class VendorReadRefused(Exception):
    """A read was answered with a 3xx, a 4xx other than 404, 408 and 429, or a body without seats."""


class VendorClient:
    def __init__(self, base_url: str, max_attempts: int = 8, backoff_initial_s: float = 0.2,
                 backoff_max_s: float = 10.0, timeout_s: float = 5.0, stop: threading.Event | None = None,
                 sender: str | None = None, retry_after_max_s: float = 60.0, limiter: Limiter | None = None) -> None:
        """`sender`: names this processor in an `X-Coterm-Sender` header (logs and tests tell who sent what);
        `retry_after_max_s`: the longest `Retry-After` honoured; `limiter`: calls out at once (default:
        32, the outbox's vendor workers)."""
        self.url = base_url.rstrip("/") + "/v1/transfers"
        parts = urlsplit(self.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path
        self._subscriptions = parts.path.removesuffix("/transfers") + "/subscriptions/"
        self._transport = Transport(timeout_s)  # one kept-alive connection per worker thread
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.stop = stop or threading.Event()
        self.sender = sender
        self.retry_after_max_s = retry_after_max_s
        self.limiter = limiter or Limiter(32)

    def send(self, request: dict[str, Any], key: str | None = None,
             may_send: Callable[[], bool] = lambda: True, trace: Any = None) -> VendorOutcome:
        """`key`: the Idempotency-Key (default: the operation id, CONTRACT.md section 4).
        `may_send`: asked before every attempt; False (the leadership lapsed, e.g. the process
        was paused while the call waited for a worker or a backoff) stops it: it stays requested
        in the store and the current leader sends it. `trace`: the trace context each attempt's
        span continues (`tracing`), sent to the vendor as `traceparent`."""
        body = json.dumps(request, sort_keys=True).encode()
        started = time.monotonic()
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            if not self.limiter.acquire(self.stop):
                raise Stopped()
            # Asked once a slot is ours: a wait for one (a throttled vendor) may outlast the leadership.
            if not may_send():
                self.limiter.release(throttled=False)
                raise Stopped()
            status: int | None = None
            try:
                with tracing.span("coterm.vendor_call", trace, tracing.CLIENT, **{
                        "http.request.method": "POST", "url.full": self.url, "coterm.operation_id": request["operation_id"],
                        "coterm.attempt": attempt}) as current:
                    status, text, headers = self._post(body, key or request["operation_id"], tracing.traceparent(current))
                    if current is not None and status is not None:
                        current.set_attribute("http.response.status_code", status)
            finally:
                self.limiter.release(throttled=status == 429)
            elapsed = int((time.monotonic() - started) * 1000)
            if status is not None and (200 <= status < 300 or status == 409):
                # Done (or done before): asking again would only repeat the answer.
                reference = _reference(text) or f"(HTTP {status} without a vendor_reference)"
                return VendorOutcome(True, attempt, elapsed, vendor_reference=reference)
            if status is not None and 300 <= status < 400:
                detail = (f"vendor answered HTTP {status} (to {headers.get('location') or 'no Location'}): "
                          "COTERM_VENDOR_URL is not the vendor's API; fix it, then retry the call")
                log.error("vendor.redirected", operation_id=request["operation_id"], status=status,
                          location=headers.get("location"), detail=detail)
                return VendorOutcome(False, attempt, elapsed, reason_code="VENDOR_UNAVAILABLE", detail=detail)
            if status is not None and 400 <= status < 500 and status not in RETRIED_4XX:
                return VendorOutcome(False, attempt, elapsed, reason_code="VENDOR_REJECTED",
                                     detail=f"vendor answered HTTP {status}: {text[:500]}")
            last = f"HTTP {status}: {text[:200]}" if status is not None else text
            if attempt < self.max_attempts:
                wait = delay_s(attempt, self.backoff_initial_s, self.backoff_max_s,
                               retry_after_s(headers.get("retry-after")), self.retry_after_max_s)
                if self.stop.wait(wait):
                    raise Stopped()
        elapsed = int((time.monotonic() - started) * 1000)
        return VendorOutcome(False, self.max_attempts, elapsed, reason_code="VENDOR_UNAVAILABLE",
                             detail=f"no answer after {self.max_attempts} attempts; last: {last}")

    def seats(self, subscription_id: str) -> int | None:
        """The vendor's seat count of a subscription (CONTRACT.md section 7); None when the vendor
        does not know it (404). Retried as `send` is, through the same limiter: reconciliation
        reads count against a throttling vendor's patience like calls do."""
        path = self._subscriptions + quote(subscription_id, safe="")
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            if not self.limiter.acquire(self.stop):
                raise Stopped()
            status: int | None = None
            try:
                status, text, headers = self._request("GET", path)
            finally:
                self.limiter.release(throttled=status == 429)
            if status == 200:
                return _seats(subscription_id, text)
            if status == 404:
                return None
            if status is not None and 300 <= status < 500 and status not in RETRIED_4XX:
                raise VendorReadRefused(f"GET {path}: vendor answered HTTP {status}: {text[:300]}")
            last = f"HTTP {status}: {text[:200]}" if status is not None else text
            if attempt < self.max_attempts and self.stop.wait(delay_s(
                    attempt, self.backoff_initial_s, self.backoff_max_s, retry_after_s(headers.get("retry-after")),
                    self.retry_after_max_s)):
                raise Stopped()
        raise VendorUnreachable(f"GET {path}: no answer after {self.max_attempts} attempts; last: {last}")

    def _post(self, body: bytes, operation_id: str, traceparent: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json", "Idempotency-Key": operation_id}
        if traceparent:
            headers["traceparent"] = traceparent
        return self._request("POST", self._path, body, headers)

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Answer:
        """`Answer`: the status (None: no answer), the body's text (or what went wrong), the headers of a non-2xx."""
        headers = dict(headers or {})
        if self.sender:
            headers["X-Coterm-Sender"] = self.sender
        return self._transport.request(method, self._origin + path, body, headers)

    def close(self) -> None:
        """Close this thread's kept-alive connection."""
        self._transport.close()


def _seats(subscription_id: str, text: str) -> int:
    try:
        answer = json.loads(text)
        seats = answer["seats"]
    except (ValueError, TypeError, KeyError) as error:
        raise VendorReadRefused(f"the vendor's answer for {subscription_id} has no seats: {text[:300]}") from error
    if type(seats) is not int or seats < 0 or answer.get("subscription_id", subscription_id) != subscription_id:
        raise VendorReadRefused(f"the vendor's answer for {subscription_id} is not its seat count: {text[:300]}")
    return seats


def _reference(text: str) -> str | None:
    try:
        value = json.loads(text).get("vendor_reference")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None
