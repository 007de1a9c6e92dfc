"""Retry-After, the jittered schedule and the shared limit of calls out at once."""

import random
import threading
from datetime import datetime, timezone

from processor.outbox.throttle import Limiter, delay_s, retry_after_s

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=timezone.utc)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("3", NOW) == 3.0 and retry_after_s(" 0 ", NOW) == 0.0
    assert retry_after_s("Wed, 02 Dec 2026 10:00:30 GMT", NOW) == 30.0
    assert retry_after_s("Wed, 02 Dec 2026 09:00:00 GMT", NOW) == 0.0  # in the past: now
    for bad in (None, "", "soon", "-1", "nan", "inf"):
        assert retry_after_s(bad, NOW) is None, bad


def test_the_schedule_is_the_least_wait_and_the_draw_spreads_it() -> None:
    draw = random.Random(1)
    waits = [delay_s(3, 0.2, 10, None, 60, draw) for _ in range(200)]
    assert min(waits) >= 0.8 and max(waits) <= 1.6 and max(waits) - min(waits) > 0.5  # 0.8 plus up to 0.8
    assert all(30 <= delay_s(1, 0.2, 10, 30, 60, draw) <= 30.2 for _ in range(50))  # never before Retry-After
    assert all(delay_s(1, 0.2, 10, 86400, 60, draw) <= 60.2 for _ in range(50))  # a hostile one is cut


def test_the_limit_halves_per_burst_of_429s_and_is_earned_back() -> None:
    limiter, stop = Limiter(32, cooldown_s=60), threading.Event()
    for _ in range(5):
        assert limiter.acquire(stop)
    for _ in range(5):
        limiter.release(throttled=True)  # one burst: halved once
    assert limiter.limit == 16 and limiter.throttled == 5
    for _ in range(16 * 10):
        assert limiter.acquire(stop)
        limiter.release(throttled=False)
    assert 20 < limiter.limit <= 32  # a slot per limit's worth of answers: 16 -> about 24 after 160
    assert limiter.take_most_out() == 5 and limiter.take_most_out() == 0


def test_a_full_limiter_waits_and_stop_ends_the_wait() -> None:
    limiter, stop = Limiter(1), threading.Event()
    assert limiter.acquire(stop)
    stop.set()
    assert limiter.acquire(stop) is False
