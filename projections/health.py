"""Readiness and read-model metrics, shared by `coterm serve` and `coterm run`."""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

STORE_ANSWER_S = 0.8  # `/readyz` says 503 within a second when the store does not answer


class Readiness:
    """`/readyz`: the store answers and the read models were at the store's head within `max_lag_s`."""

    def __init__(self, head: Callable[[], int], caught_up_at: Callable[[], float], max_lag_s: float,
                 extra: Callable[[], str | None] = lambda: None,
                 warnings: Callable[[], list[str]] = lambda: []) -> None:
        """`extra`: a reason not to be ready; `warnings`: what an operator should know while ready
        (e.g. a processor that holds no partition), shown in the body."""
        self.head, self.caught_up_at, self.max_lag_s, self.extra = head, caught_up_at, max_lag_s, extra
        self.warnings = warnings

    def check(self, timeout_s: float = STORE_ANSWER_S) -> tuple[bool, dict[str, Any]]:
        # A database that stops answering would hold the probe for as long as the driver waits
        # (seconds to minutes): ask from a thread of its own and answer 503 once it took too long.
        asked: Future[int] = Future()

        def ask() -> None:
            try:
                asked.set_result(self.head())
            except Exception as error:  # noqa: BLE001 - handed to the waiting probe
                asked.set_exception(error)

        threading.Thread(target=ask, name="readyz-store", daemon=True).start()
        try:
            head = asked.result(timeout=timeout_s)
        except FutureTimeout:
            return False, {"ready": False, "reason": f"store did not answer within {timeout_s:g}s"}
        except Exception as error:  # noqa: BLE001 - any failure to reach the store means not ready
            return False, {"ready": False, "reason": f"store unreachable: {type(error).__name__}: {error}"[:500]}
        caught_up_at = self.caught_up_at()
        if not caught_up_at:
            return False, {"ready": False, "store_position": head, "reason": "read models have not caught up yet"}
        age = time.monotonic() - caught_up_at
        if age > self.max_lag_s:
            return False, {"ready": False, "store_position": head,
                           "reason": f"read models last caught up {age:.0f}s ago (limit {self.max_lag_s:g}s)"}
        problem = self.extra()
        if problem:
            return False, {"ready": False, "store_position": head, "reason": problem}
        body: dict[str, Any] = {"ready": True, "store_position": head, "read_models_caught_up_s_ago": round(age, 1)}
        warnings = self.warnings()
        if warnings:
            body["warnings"] = warnings
        return True, body


class ReadinessCollector:
    """`coterm_ready`: what `/readyz` would answer, as a metric (for alerting from Prometheus)."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness

    def collect(self) -> Iterator[Metric]:
        ready, _ = self.readiness.check()
        yield GaugeMetricFamily("coterm_ready", "1 when /readyz answers 200", value=int(ready))


class ReadModelCollector:
    """What the read models say, for `coterm serve`'s `/metrics`: operations by status and
    reason, dead letters by reason, and how far the read models trail the store."""

    def __init__(self, queries: Any, head: Callable[[], int], position: Callable[[], int]) -> None:
        self.queries, self.head, self.position = queries, head, position

    def collect(self) -> Iterator[Metric]:
        counts = self.queries.counts()  # not `stats()`: a scrape needs no latency percentiles
        by_status = GaugeMetricFamily("coterm_operations", "Transfers by status", labels=["status"])
        for status, n in counts["by_status"].items():
            by_status.add_metric([status], n)
        yield by_status
        by_reason = GaugeMetricFamily("coterm_operations_refused", "Transfers rejected, failed or expired, by "
                                      "reason code", labels=["reason"])
        for reason, n in counts["by_reason"].items():
            by_reason.add_metric([reason], n)
        yield by_reason
        letters = GaugeMetricFamily("coterm_dead_letters", "Dead letters by reason", labels=["reason"])
        for reason, n in counts["dead_letters"].items():
            letters.add_metric([reason], n)
        yield letters
        bulks = GaugeMetricFamily("coterm_bulk_migrations", "Bulk migrations by status (deciding: something "
                                  "waits for its renewal window)", labels=["status"])
        for status, n in counts["bulks"].items():
            bulks.add_metric([status], n)
        yield bulks
        drift = self.queries.drift_counts()
        yield GaugeMetricFamily("coterm_vendor_drift_subscriptions", "Subscriptions whose seats the vendor counts "
                                "differently, found by reconciliation and neither resolved nor explained", value=drift["open"])
        yield GaugeMetricFamily("coterm_vendor_drift_explained_subscriptions", "Seat drift staff explained "
                                "(coterm's seats kept)", value=drift["explained"])
        head = self.head()
        yield GaugeMetricFamily("coterm_store_position", "Newest event in the store", value=head)
        yield GaugeMetricFamily("coterm_read_model_lag_events", "Store events not yet in the read models",
                                value=max(0, head - self.position()))
