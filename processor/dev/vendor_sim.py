"""A vendor simulator implementing the transfer API, for the demo and the tests.

It dedupes by Idempotency-Key (a repeat gets 409 with the first vendor_reference), and
can inject faults: a share of 503s, the first N attempts per key failing, or plans it
rejects with 400. It throttles as a real vendor does: above `throttle_rate` requests a second,
or for a share of attempts (`throttle_share`), it answers 429 with a `Retry-After` of
`retry_after_s` seconds (a [low, high] range draws whole seconds in it); `script` answers the
next requests with given statuses and headers, in order (429, 408, a 3xx...).
It answers `GET /v1/subscriptions/{id}` (contract 1.3, section 7) with the seats its accepted
calls left there (`POST /_sim/seats` sets them behind coterm's back, as the vendor's own portal
would; 404 for a subscription it never heard of). `GET /_sim/requests` lists what it received (each attempt with its time and the answer's status
and `Retry-After`), and the most requests it had open at once; `POST /_sim/faults` changes the
faults at run time.
"""

import json
import random
import urllib.parse
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import ValidationError

from contracts.vendor import VendorTransferRequest


@dataclass
class Faults:
    fail_rate: float = 0.0  # share of attempts answered 503
    fail_first: int = 0  # the first N attempts of every key answered 503
    reject_plans: list[str] = field(default_factory=list)  # plan ids answered 400
    hang_s: float = 0.0  # every attempt waits this long, then 503 (beyond the client's timeout: a timeout)
    delay_s: float = 0.0  # every attempt is answered this much later (a slow vendor; calls pile up)
    throttle_rate: float = 0.0  # requests a second taken before answering 429 (0: no limit)
    throttle_share: float = 0.0  # share of attempts answered 429
    retry_after_s: list[int] = field(default_factory=lambda: [1, 1])  # the 429's Retry-After, drawn in [low, high]
    script: list[dict[str, Any]] = field(default_factory=list)  # next answers: {"status", "retry_after", "location"}
    seed: int = 7


class VendorState:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.lock = threading.RLock()  # `handle` holds it while it `record`s
        self.random = random.Random(faults.seed)
        self.accepted: dict[str, dict[str, Any]] = {}  # key -> {"reference", "body"}
        self.requests: list[dict[str, Any]] = []  # every attempt, for tests and the demo
        self.attempts: dict[str, int] = {}
        # Calls not yet accepted that are being handled now, per subscription they touch: a second
        # key on one subscription while the first is open is an overlap (CONTRACT.md, 1.2).
        self.open_on: dict[str, set[str]] = {}
        self.overlaps: list[dict[str, Any]] = []
        self.traceparents: dict[str, list[str]] = {}  # key -> the `traceparent` of each attempt that sent one
        self.open_now = 0  # transfer requests being handled now, and the most at once
        self.most_open = 0
        self.window: list[float] = []  # when the requests of the last second came (throttle_rate)
        self.reads = 0  # GET /v1/subscriptions/{id} asked, answered or not
        self.seats: dict[str, int] = {}  # subscription -> seats, as accepted calls (or POST /_sim/seats) left them

    def record(self, key: str | None, raw: bytes, complete: bool = True, sender: str | None = None) -> None:
        """Every attempt as received; `complete` False: the body stopped short of its Content-Length."""
        with self.lock:
            self.requests.append({"key": key, "body": raw.decode("utf-8", "replace"), "complete": complete,
                                  "at": time.time(), "sender": sender})

    def opened(self, key: str | None, raw: bytes) -> list[str]:
        """The subscriptions a new call touches, marked open while it is handled (none for a repeat)."""
        try:
            body = json.loads(raw)
            touched = [body["source"]["subscription_id"], body["target"]["subscription_id"]]
        except (ValueError, KeyError, TypeError):
            return []
        with self.lock:
            if not key or key in self.accepted:
                return []
            for sub in touched:
                others = self.open_on.setdefault(sub, set()) - {key}
                if others:
                    self.overlaps.append({"subscription_id": sub, "keys": sorted(others | {key}), "at": time.time()})
                self.open_on[sub].add(key)
        return touched

    def closed(self, key: str | None, touched: list[str]) -> None:
        with self.lock:
            for sub in touched:
                self.open_on.get(sub, set()).discard(key or "")

    def throttled(self) -> tuple[int, dict[str, str]] | None:
        """A 429 (or a scripted answer) instead of handling the request, if one is due; under the lock."""
        if self.faults.script:
            answer = self.faults.script.pop(0)
            headers = {name: str(answer[field]) for field, name in (("retry_after", "Retry-After"), ("location", "Location"))
                       if answer.get(field) is not None}
            return int(answer["status"]), headers
        now = time.monotonic()
        if self.faults.throttle_rate > 0:
            self.window = [t for t in self.window if now - t < 1.0]
            if len(self.window) >= self.faults.throttle_rate:
                return 429, {"Retry-After": "1"}
            self.window.append(now)
        if self.faults.throttle_share > 0 and self.random.random() < self.faults.throttle_share:
            low, high = self.faults.retry_after_s
            return 429, {"Retry-After": str(self.random.randint(low, high))}
        return None

    def handle(self, key: str | None, raw: bytes, sender: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The status, body and headers of the answer to one attempt."""
        with self.lock:  # recorded and answered in one step: the log's order is the order of answers
            self.record(key, raw, sender=sender)
            status, body, headers = self._answer(key, raw)
            self.requests[-1].update(status=status, retry_after=headers.get("Retry-After"), open=self.open_now)
            return status, body, headers

    def _answer(self, key: str | None, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not key:
            return 400, {"error": "Idempotency-Key header is required"}, {}
        try:
            body = VendorTransferRequest.model_validate_json(raw)
        except ValidationError as error:
            return 400, {"error": f"invalid transfer request: {error.errors(include_url=False)[:3]}"}, {}
        throttled = self.throttled()
        if throttled is not None:
            return throttled[0], {"error": f"HTTP {throttled[0]} (simulated)"}, throttled[1]
        seen = self.accepted.get(key)
        if seen is not None:
            if seen["body"] != body:
                return 422, {"error": "Idempotency-Key reused with a different body"}, {}
            return 409, {"vendor_reference": seen["reference"], "error": "duplicate Idempotency-Key"}, {}
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] <= self.faults.fail_first or self.random.random() < self.faults.fail_rate:
            return 503, {"error": "vendor temporarily unavailable"}, {}
        plan = getattr(body.target, "plan_id", None)
        if plan in self.faults.reject_plans:
            return 400, {"error": f"plan {plan} is retired and takes no new subscriptions"}, {}
        reference = f"VND-{len(self.accepted) + 1:06d}"
        self.accepted[key] = {"reference": reference, "body": body, "at": time.time()}
        self.seats[body.source.subscription_id] = body.source.seats_after
        self.seats[body.target.subscription_id] = body.target.seats_after
        return 201, {"vendor_reference": reference}, {}

    def subscription(self, subscription_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.reads += 1
            throttled = self.throttled()
            if throttled is not None:
                return throttled[0], {"error": f"HTTP {throttled[0]} (simulated)"}, throttled[1]
            if subscription_id not in self.seats:
                return 404, {"error": f"no subscription {subscription_id}"}, {}
            return 200, {"subscription_id": subscription_id, "seats": self.seats[subscription_id]}, {}


class _Handler(BaseHTTPRequestHandler):
    server: "VendorSimulator"
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection (every reply has a Content-Length)
    # Headers and body go out in two writes: with Nagle's algorithm the body waited for the
    # client's delayed ACK, 40 ms per answer on a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo read /_sim
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:  # noqa: N802
        state = self.server.state
        if self.path == "/v1/transfers":
            expected = int(self.headers.get("Content-Length") or 0)
            body = self._body()
            if len(body) < expected:  # the client died while sending: record it, nobody is left to answer
                state.record(self.headers.get("Idempotency-Key"), body, complete=False)
                self.close_connection = True
                return
            key, sender = self.headers.get("Idempotency-Key"), self.headers.get("X-Coterm-Sender")
            if self.headers.get("traceparent"):
                with state.lock:
                    state.traceparents.setdefault(key or "", []).append(self.headers["traceparent"])
            if state.faults.hang_s > 0:  # outside the lock: other calls hang too, each on its own
                state.record(key, body, sender=sender)
                time.sleep(state.faults.hang_s)
                self._reply(503, {"error": "vendor timed out"})
                return
            touched = state.opened(key, body)
            with state.lock:
                state.open_now += 1
                state.most_open = max(state.most_open, state.open_now)
            try:
                if state.faults.delay_s > 0:  # outside the lock: calls are slow side by side
                    time.sleep(state.faults.delay_s)
                self._reply(*state.handle(key, body, sender))
            finally:
                state.closed(key, touched)
                with state.lock:
                    state.open_now -= 1
        elif self.path == "/_sim/seats":
            try:
                changes = {str(k): int(v) for k, v in json.loads(self._body()).items()}
            except (ValueError, TypeError, AttributeError) as error:
                self._reply(400, {"error": str(error)})
                return
            with state.lock:
                state.seats.update(changes)
            self._reply(200, {"seats": changes})
        elif self.path == "/_sim/faults":
            try:
                changes = json.loads(self._body())
                with state.lock:
                    state.faults = Faults(**{**asdict(state.faults), **changes})
            except (ValueError, TypeError) as error:
                self._reply(400, {"error": str(error)})
                return
            self._reply(200, asdict(state.faults))
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        if self.path == "/_sim/requests":
            with state.lock:
                self._reply(200, {"requests": state.requests, "overlaps": state.overlaps, "most_open": state.most_open,
                                  "accepted": {k: v["reference"] for k, v in state.accepted.items()}})
        elif self.path == "/healthz":
            self._reply(200, {"ok": True})
        elif self.path.startswith("/v1/subscriptions/"):
            self._reply(*state.subscription(urllib.parse.unquote(self.path.removeprefix("/v1/subscriptions/"))))
        else:
            self._reply(404, {"error": f"no route {self.path}"})


class VendorSimulator(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, faults: Faults | None = None, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), _Handler)
        self.state = VendorState(faults or Faults())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "VendorSimulator":
        self._thread = threading.Thread(target=self.serve_forever, name="vendor-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that died or hung up mid-request (a killed processor): nothing to report
        super().handle_error(request, client_address)
