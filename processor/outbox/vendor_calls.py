"""Every vendor call of a client in flight on one thread, through libcurl's multi interface.

Why not a worker thread per call: the outbox had 32 vendor threads, each call a hand-over to a
worker, two GIL hand-overs around the HTTP exchange and a future; under a burst those threads
took a fifth of the outbox process's CPU (perf, per thread), most of it the kernel switching
between them and the interpreter's thread machinery, not HTTP. Here one thread adds each
attempt to a libcurl multi handle, waits on every connection at once, and settles what comes
back by the same rules `VendorClient.send` always had (`vendor_client.judged`, `delay_s`):
prototyped in `make bench --quick`, alternating, the outbox spent 0.2-0.3 ms less per transfer.

Each call's attempts: a slot of the shared `Limiter` (the calls out at once), `may_send()`
asked once the slot is its own, the same body and Idempotency-Key every time, a span each,
the backoff (never sooner than `Retry-After`) between them. A client stopping (`stop` set, or
`shutdown`) ends every call not yet settled with None: it stays requested in the store, and the
vendor's idempotency makes a resend by the next leader harmless.
"""

import heapq
import itertools
import json
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Protocol

import pycurl
import structlog

from processor import tracing
from processor.outbox.http_transport import configured, failure, parsed_headers, trusted_certificates
from processor.outbox.throttle import Limiter, delay_s, retry_after_s
from processor.outbox.vendor_answers import VendorOutcome, given_up, judged

log = structlog.get_logger("coterm.vendor")
SLOT_POLL_S = 0.05  # how soon a call waiting for a limiter slot looks again (another user may free one)
IDLE_WAIT_S = 0.5


@dataclass
class Call:
    request: dict[str, Any]
    key: str
    operation_id: str
    may_send: Callable[[], bool]
    # Called once: on the driver's thread (on the submitter's, once the driver has stopped).
    done: Callable[[VendorOutcome | None], None]
    trace: Any = None  # the parent context each attempt's span continues
    on_start: Callable[[], None] | None = None  # when its first attempt goes out
    attempt: int = 0
    started: float = 0.0
    last: str = ""
    span: Any = None
    body: bytes = b""  # the request, encoded once at its first attempt: every attempt sends these bytes
    received: BytesIO = field(default_factory=BytesIO)
    header_lines: list[bytes] = field(default_factory=list)


class Client(Protocol):
    """What the calls take from their client (`vendor_client.VendorClient`): where, how long,
    how often, how many at once, and when to stop."""

    url: str
    timeout_s: float
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    retry_after_max_s: float
    limiter: Limiter
    stop: threading.Event

    def post_headers(self, key: str, traceparent: str | None) -> list[str]: ...


class VendorCalls:
    """`submit` from any thread; the calls run on this driver's own thread, started at the first."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._new: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._ready: deque[Call] = deque()  # due now, waiting for a slot, in the order handed over
        self._later: list[tuple[float, int, Call]] = []  # in backoff: a heap by due time
        self._order = itertools.count()  # ties in `_later` go by the order they were put there
        self._active: dict[Any, Call] = {}  # easy handle -> its call
        self._free: list[Any] = []
        self._ca = trusted_certificates()
        self._multi: Any = None  # these three made with the driver's thread, at the first call
        self._wake_r = self._wake_w = -1
        self._closing = False
        self._sleeping = False  # the driver waits in `select`: a new call must wake it
        self._stopped = False  # the driver has ended: its pipe is closed, a new call ends at once
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # around starting, stopping and waking the driver

    def submit(self, call: Call) -> None:
        with self._lock:
            if self._stopped:
                call.done(None)
                return
            if self._thread is None:
                self._multi = pycurl.CurlMulti()
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
                os.set_blocking(self._wake_w, False)
                self._thread = threading.Thread(target=self._run, name="vendor-calls", daemon=True)
                self._thread.start()
            self._new.put(call)
            if self._sleeping:  # else it looks at the queue before it sleeps (`_wait`)
                self._wake()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop: every call not yet settled ends with None."""
        with self._lock:
            self._closing = True
            self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _wake(self) -> None:
        """Under `_lock`: the pipe is open while the driver runs."""
        if self._stopped or self._thread is None:
            return
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the driver wakes anyway

    # -- the driver's thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._closing and not self.client.stop.is_set():
                self._take_new()
                self._start_due()
                while self._multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                self._settle_answered()
                self._wait()
        except Exception as error:  # noqa: BLE001 - a driver that dies must still report every call
            log.error("vendor.driver_crashed", error=repr(error)[:300])
        finally:
            self._abandon()

    def _take_new(self) -> None:
        while True:
            try:
                self._ready.append(self._new.get_nowait())
            except queue.Empty:
                return

    def _start_due(self) -> None:
        """Start the calls that are due, in order, while the limiter has slots."""
        now, limiter = time.monotonic(), self.client.limiter
        while self._later and self._later[0][0] <= now:
            self._ready.append(heapq.heappop(self._later)[2])
        while self._ready and limiter.try_acquire():
            call = self._ready.popleft()
            if not call.may_send():  # asked once a slot is ours: the leadership may have lapsed meanwhile
                limiter.release(throttled=False)
                call.done(None)
                continue
            try:
                self._start(call, now)
            except Exception as error:  # noqa: BLE001 - a call that cannot start is reported, never lost
                log.error("vendor.call_not_started", operation_id=call.operation_id, error=repr(error)[:300])
                limiter.release(throttled=False)
                call.done(None)

    def _start(self, call: Call, now: float) -> None:
        curl = self._free.pop() if self._free else self._new_handle()
        call.attempt += 1
        if call.attempt == 1:
            call.body = json.dumps(call.request, sort_keys=True).encode()
            call.started = now
            if call.on_start is not None:
                call.on_start()
        call.span = tracing.start("coterm.vendor_call", call.trace, tracing.CLIENT, **{
            "http.request.method": "POST", "url.full": self.client.url, "coterm.operation_id": call.operation_id,
            "coterm.attempt": call.attempt})
        call.received, call.header_lines = BytesIO(), []
        curl.setopt(pycurl.POSTFIELDS, call.body)
        curl.setopt(pycurl.HTTPHEADER, self.client.post_headers(call.key, tracing.traceparent(call.span)))
        curl.setopt(pycurl.WRITEDATA, call.received)
        curl.setopt(pycurl.HEADERFUNCTION, call.header_lines.append)
        self._multi.add_handle(curl)
        self._active[curl] = call

    def _new_handle(self) -> Any:
        """Every call goes to the same URL: it is set once, with the rest, on each new handle."""
        curl = configured(pycurl.Curl(), self.client.timeout_s, self._ca)
        curl.setopt(pycurl.URL, self.client.url)
        return curl

    def _settle_answered(self) -> None:
        while True:
            queued, done, failed = self._multi.info_read()
            for curl in done:
                status = curl.getinfo(pycurl.RESPONSE_CODE)
                # A success's headers are never read: the client wants Retry-After and Location.
                headers = {} if 200 <= status < 300 else parsed_headers(self._active[curl].header_lines)
                self._answered(curl, status, self._active[curl].received.getvalue().decode("utf-8", "replace"), headers)
            for curl, code, message in failed:
                self._answered(curl, None, failure(curl, code, message), {}, broken=True)
            if not queued:
                return

    def _answered(self, curl: Any, status: int | None, text: str, headers: dict[str, str], broken: bool = False) -> None:
        call = self._active.pop(curl)
        self.client.limiter.release(throttled=status == 429)
        try:
            self._multi.remove_handle(curl)
            if broken:
                curl.close()  # a handle in an unknown state is not reused: the next attempt connects afresh
            else:
                self._free.append(curl)
            tracing.finish(call.span, status)
            self._settle(call, status, text, headers)
        except Exception as error:  # noqa: BLE001 - an answer that cannot be settled ends its call, never loses it
            log.error("vendor.answer_not_settled", operation_id=call.operation_id, error=repr(error)[:300])
            call.done(None)

    def _settle(self, call: Call, status: int | None, text: str, headers: dict[str, str]) -> None:
        """The call's outcome, or its next attempt's due time."""
        client, now = self.client, time.monotonic()
        elapsed = int((now - call.started) * 1000)
        outcome = judged(status, text, headers, call.attempt, elapsed, call.operation_id)
        if outcome is not None:
            call.done(outcome)
            return
        call.last = f"HTTP {status}: {text[:200]}" if status is not None else text
        if call.attempt >= client.max_attempts:
            call.done(given_up(client.max_attempts, elapsed, call.last))
            return
        due = now + delay_s(call.attempt, client.backoff_initial_s, client.backoff_max_s,
                            retry_after_s(headers.get("retry-after")), client.retry_after_max_s)
        heapq.heappush(self._later, (due, next(self._order), call))

    def _wait(self) -> None:
        """Until a connection has something, a call is due, a slot may be free, or a new call came."""
        wait = SLOT_POLL_S if self._ready else IDLE_WAIT_S  # a slot may be freed by another user of the limiter
        if self._later:
            wait = max(0.0, min(wait, self._later[0][0] - time.monotonic()))
        curl_ms = self._multi.timeout()
        if self._active and curl_ms >= 0:
            wait = min(wait, curl_ms / 1000)
        readers, writers, errors = self._multi.fdset()
        self._sleeping = True  # from here a new call writes to the pipe; one put before is in the queue
        try:
            if self._new.empty():
                select.select([*readers, self._wake_r], writers, errors, wait)
        except (OSError, ValueError):  # a descriptor libcurl closed meanwhile: look again
            time.sleep(0.001)
        finally:
            self._sleeping = False
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _abandon(self) -> None:
        """Every call not settled ends with None; every connection is closed."""
        self._take_new()
        for curl, call in list(self._active.items()):
            self._multi.remove_handle(curl)
            curl.close()
            self.client.limiter.release(throttled=False)
            tracing.finish(call.span, None)
            call.done(None)
        self._active.clear()
        for call in [*self._ready, *(c for _, _, c in self._later)]:
            call.done(None)
        self._ready.clear()
        self._later.clear()
        for curl in self._free:
            curl.close()
        self._free.clear()
        self._multi.close()
        with self._lock:  # no call is submitted, and no wake written, from here on
            self._stopped = True
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
        self._take_new()  # submitted while the calls above were ended
        for call in self._ready:
            call.done(None)
        self._ready.clear()
