"""Prometheus metrics, liveness and readiness of `coterm run` (`--metrics-port`).

The hot paths keep plain counts (`Inbox.stats`, `VendorStats`); this module turns them into
metrics only when scraped. The outbox runs in a process of its own, so its counts reach the
consumer's process through `SharedStatus.vendor` (shared memory, written by the outbox only).
"""

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from projections.health import Readiness, ReadinessCollector

VENDOR_RESULTS = ("success", "VENDOR_REJECTED", "VENDOR_UNAVAILABLE")
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Layout of the shared array: calls per result, retries, latency sum, then one count per bucket and +Inf,
# then the throttled answers (429) and the limit of calls out at once (`throttle.Limiter`).
VENDOR_SLOTS = len(VENDOR_RESULTS) + 2 + len(LATENCY_BUCKETS_S) + 1 + 2
THROTTLED_SLOT, LIMIT_SLOT = VENDOR_SLOTS - 2, VENDOR_SLOTS - 1


class VendorStats:
    """Vendor call outcomes as the outbox sees them: one count per finished call (all its attempts)."""

    def __init__(self, limiter: Any = None) -> None:
        self.values = [0.0] * VENDOR_SLOTS
        self.limiter = limiter  # the process's `throttle.Limiter`, read when the values are shared

    def snapshot(self) -> list[float]:
        if self.limiter is not None:
            self.values[THROTTLED_SLOT] = self.limiter.throttled
            self.values[LIMIT_SLOT] = int(self.limiter.limit)
        return self.values

    def record(self, ok: bool, reason_code: str | None, attempts: int, latency_ms: int) -> None:
        result = "success" if ok else (reason_code or "VENDOR_UNAVAILABLE")
        self.values[VENDOR_RESULTS.index(result) if result in VENDOR_RESULTS else 2] += 1
        base = len(VENDOR_RESULTS)
        self.values[base] += max(0, attempts - 1)
        seconds = latency_ms / 1000
        self.values[base + 1] += seconds
        bucket = next((i for i, bound in enumerate(LATENCY_BUCKETS_S) if seconds <= bound), len(LATENCY_BUCKETS_S))
        self.values[base + 2 + bucket] += 1


def vendor_metrics(values: Any, pending: int) -> Iterator[Metric]:
    calls = CounterMetricFamily("coterm_vendor_calls", "Vendor calls finished, by result (a call counts once, "
                                "whatever its attempts)", labels=["result"])
    for i, result in enumerate(VENDOR_RESULTS):
        calls.add_metric([result], values[i])
    yield calls
    base = len(VENDOR_RESULTS)
    yield CounterMetricFamily("coterm_vendor_retries", "Vendor attempts after the first (5xx, 429, 408, "
                              "timeouts, connection errors)", value=values[base])
    buckets, running = [], 0.0
    for i, bound in enumerate((*LATENCY_BUCKETS_S, float("inf"))):
        running += values[base + 2 + i]
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    yield HistogramMetricFamily("coterm_vendor_call_seconds", "Vendor call latency, first attempt to answer",
                                buckets=buckets, sum_value=values[base + 1])
    yield GaugeMetricFamily("coterm_vendor_calls_pending", "Vendor calls requested and not yet answered", value=pending)
    yield CounterMetricFamily("coterm_vendor_throttled", "Vendor answers 429 (throttled): each halves the calls "
                              "sent at once, for a while", value=values[THROTTLED_SLOT])
    yield GaugeMetricFamily("coterm_vendor_concurrency_limit", "Vendor calls this outbox sends at once at most now "
                            "(lower while the vendor throttles; 0 before the first call)", value=values[LIMIT_SLOT])


def partition_metrics(check: Any) -> Iterator[Metric]:
    """The orders topic's partitions, as configured and as the broker has them, and how many this
    processor holds: 0 held means the group has more members than partitions."""
    if check is None:
        return
    yield GaugeMetricFamily("coterm_orders_partitions_configured", "COTERM_TOPIC_PARTITIONS", value=check.configured)
    if check.partitions is not None:
        yield GaugeMetricFamily("coterm_orders_partitions", "Partitions of the orders topic", value=check.partitions)
    if check.held is not None:
        yield GaugeMetricFamily("coterm_orders_partitions_held", "Partitions of the orders topic this processor "
                                "holds (0: it stands idle)", value=check.held)


class RunCollector:
    """What one `coterm run` reports, read at scrape time."""

    def __init__(self, inbox: Any, progress: Any, status: Any, head: Callable[[], int],
                 read_model_position: Callable[[], int]) -> None:
        self.inbox, self.progress, self.status = inbox, progress, status
        self.head, self.read_model_position = head, read_model_position

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily("coterm_messages", "Order messages applied, by outcome (applied, duplicate, "
                                       "dead_lettered) and dead-letter reason", labels=["outcome", "reason"])
        for (outcome, reason), n in sorted(self.inbox.stats.by_outcome.items()):
            messages.add_metric([outcome, reason], n)
        yield messages
        lag = GaugeMetricFamily("coterm_consumer_lag_messages", "Messages behind the high watermark, per assigned "
                                "partition", labels=["topic", "partition"])
        for (topic, partition), behind in sorted(self.progress.lag.items()):
            if behind is not None:  # not fetched from yet: unknown, not zero
                lag.add_metric([topic, str(partition)], behind)
        yield lag
        yield from partition_metrics(self.progress.partitions)
        yield GaugeMetricFamily("coterm_halves_waiting", "Transfer halves waiting for their pair",
                                value=self.status.waiting_halves.value)
        yield from vendor_metrics(self.status.vendor, self.status.pending_calls.value)
        yield GaugeMetricFamily("coterm_vendor_calls_waiting_turn", "Decided vendor calls waiting behind an "
                                "earlier call on the same subscription (contract 1.2)",
                                value=self.status.waiting_turn.value)
        head = self.head()
        yield GaugeMetricFamily("coterm_outbox_backlog_events", "Store events past the outbox's read position",
                                value=max(0, head - self.status.outbox_position.value))
        yield GaugeMetricFamily("coterm_outbox_leader", "1 when this processor's outbox holds the leadership "
                                "(publishes results, sends vendor calls)", value=int(bool(self.status.leading.value)))
        yield CounterMetricFamily("coterm_results_published", "Results and dead letters published to Kafka",
                                  value=self.status.published.value)
        yield GaugeMetricFamily("coterm_store_position", "Newest event in the store", value=head)
        yield GaugeMetricFamily("coterm_read_model_lag_events", "Store events not yet in the read models",
                                value=max(0, head - self.read_model_position()))


class MetricsServer:
    """`/metrics`, `/healthz` (the process answers) and `/readyz` on a port of their own."""

    def __init__(self, host: str, port: int, collector: Any, readiness: Readiness) -> None:
        registry = CollectorRegistry()
        registry.register(collector)
        registry.register(ReadinessCollector(readiness))
        handler = _handler(registry, readiness)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(registry: CollectorRegistry, readiness: Readiness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._json(200, {"ok": True})
            elif path == "/readyz":
                ready, body = readiness.check()
                self._json(200 if ready else 503, body)
            else:
                self._json(404, {"error": "NOT_FOUND", "detail": "this port serves /metrics, /healthz and /readyz"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the JSON log

    return Handler
