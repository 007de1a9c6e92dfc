"""HTTP client for the vendor's transfer API (CONTRACT.md section 4).

Retries 5xx, 429 (throttled), 408 (too slow for the vendor), timeouts and refused connections
with full-jitter exponential backoff, never sooner than the answer's `Retry-After`, always with
the same Idempotency-Key and body (`throttle.py`); 409 means the vendor already has it and is a
success; other 4xx are refusals (`vendor_answers.judged`). A 3xx is no answer of the API's:
COTERM_VENDOR_URL points elsewhere, so the call is parked at once with one clear log line rather
than retried. Every call of the process shares one `Limiter`: while the vendor throttles, fewer
calls go out. Transfer calls run together on one thread (`vendor_calls`): `submit` hands one
over, `send` waits for its outcome; the reconciliation's reads (`seats`) run on the caller's.
"""

import json
import queue
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import structlog

from processor.outbox.http_transport import Transport
from processor.outbox.throttle import Limiter, delay_s, retry_after_s
from processor.outbox.vendor_answers import RETRIED_4XX, VendorOutcome
from processor.outbox.vendor_calls import Call, VendorCalls

log = structlog.get_logger("coterm.vendor")
__all__ = ["VendorClient", "VendorOutcome", "Stopped", "VendorUnreachable", "VendorReadRefused"]


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
        32)."""
        self.url = base_url.rstrip("/") + "/v1/transfers"
        parts = urlsplit(self.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path
        self._subscriptions = parts.path.removesuffix("/transfers") + "/subscriptions/"
        self._transport = Transport(timeout_s)  # the reads': one kept-alive connection per calling thread
        self._calls = VendorCalls(self)  # the transfer calls: all on one thread
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
        was paused while the call waited for a slot or a backoff) stops it: it stays requested
        in the store and the current leader sends it. `trace`: the trace context each attempt's
        span continues (`tracing`), sent to the vendor as `traceparent`. Raises `Stopped`."""
        settled: queue.SimpleQueue[VendorOutcome | None] = queue.SimpleQueue()
        self.submit(request, settled.put, key, may_send, trace)
        outcome = settled.get()
        if outcome is None:
            raise Stopped()
        return outcome

    def submit(self, request: dict[str, Any], done: Callable[[VendorOutcome | None], None], key: str | None = None,
               may_send: Callable[[], bool] = lambda: True, trace: Any = None,
               on_start: Callable[[], None] | None = None) -> None:
        """As `send`, without waiting: `done(outcome)` is called once, on the calls' thread, with
        None where `send` raises `Stopped`; `on_start()` when its first attempt goes out."""
        self._calls.submit(Call(request, key or request["operation_id"], request["operation_id"], may_send, done, trace,
                                on_start))

    def post_headers(self, key: str, traceparent: str | None) -> list[str]:
        """A transfer call's headers, as libcurl takes them (`Expect:` turns off its 100-continue)."""
        headers = ["Content-Type: application/json", f"Idempotency-Key: {key}", "Expect:"]
        if traceparent:
            headers.append(f"traceparent: {traceparent}")
        return headers + self._sender_header()

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
                status, text, headers = self._transport.get(self._origin + path, self._sender_header())
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

    def _sender_header(self) -> list[str]:
        return [f"X-Coterm-Sender: {self.sender}"] if self.sender else []

    def close(self) -> None:
        """Close this thread's kept-alive connection (the reads')."""
        self._transport.close()

    def shutdown(self) -> None:
        """End the calls not settled (each with `Stopped`, or None to `submit`'s `done`) and close
        their connections; this thread's too."""
        self.stop.set()
        self._calls.shutdown()
        self.close()


def _seats(subscription_id: str, text: str) -> int:
    try:
        answer = json.loads(text)
        seats = answer["seats"]
    except (ValueError, TypeError, KeyError) as error:
        raise VendorReadRefused(f"the vendor's answer for {subscription_id} has no seats: {text[:300]}") from error
    if type(seats) is not int or seats < 0 or answer.get("subscription_id", subscription_id) != subscription_id:
        raise VendorReadRefused(f"the vendor's answer for {subscription_id} is not its seat count: {text[:300]}")
    return seats

