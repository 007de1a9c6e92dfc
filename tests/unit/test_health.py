"""Readiness: the store answers, the read models are fresh, and whatever else the process needs."""

import time

from processor.metrics import VendorStats, vendor_metrics
from projections.health import Readiness


def unreachable() -> int:
    raise ConnectionError("connection refused")


def test_not_ready_while_the_store_does_not_answer() -> None:
    ready, body = Readiness(unreachable, time.monotonic, 30).check()
    assert not ready and "store unreachable" in body["reason"] and "connection refused" in body["reason"]


def test_a_store_that_stops_answering_is_a_quick_503_not_a_hung_probe() -> None:
    started = time.monotonic()
    ready, body = Readiness(lambda: time.sleep(5) or 5, time.monotonic, 30).check()
    assert not ready and "did not answer within" in body["reason"]
    assert time.monotonic() - started < 2  # answered while the store still hangs


def test_not_ready_before_the_first_catch_up_or_when_it_is_too_old() -> None:
    assert Readiness(lambda: 5, lambda: 0.0, 30).check()[1]["reason"] == "read models have not caught up yet"
    ready, body = Readiness(lambda: 5, lambda: time.monotonic() - 60, 30).check()
    assert not ready and "limit 30s" in body["reason"]
    assert Readiness(lambda: 5, time.monotonic, 30).check()[0]


def test_an_extra_condition_can_hold_readiness_back() -> None:
    ready, body = Readiness(lambda: 5, time.monotonic, 30, extra=lambda: "the outbox process is not running").check()
    assert not ready and body["reason"] == "the outbox process is not running"


def test_vendor_stats_count_each_call_once_and_bucket_its_latency() -> None:
    stats = VendorStats()
    stats.record(True, None, 1, 40)
    stats.record(False, "VENDOR_UNAVAILABLE", 8, 45_000)
    stats.record(False, "VENDOR_REJECTED", 1, 5)
    metrics = {m.name: m for m in vendor_metrics(stats.values, pending=3)}
    calls = {s.labels["result"]: s.value for s in metrics["coterm_vendor_calls"].samples}
    assert calls == {"success": 1, "VENDOR_REJECTED": 1, "VENDOR_UNAVAILABLE": 1}
    assert metrics["coterm_vendor_retries"].samples[0].value == 7
    buckets = {s.labels.get("le"): s.value for s in metrics["coterm_vendor_call_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets["0.01"] == 1 and buckets["0.05"] == 2 and buckets["30.0"] == 2 and buckets["60.0"] == 3
    assert buckets["+Inf"] == 3
    assert metrics["coterm_vendor_calls_pending"].samples[0].value == 3
