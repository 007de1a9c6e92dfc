"""How long to wait before the vendor is asked again, and how many calls may be out at once.

Vendors throttle (429, with `Retry-After`) and time slow clients out (408); contract 1.3
(section 4) says both are retried like 5xx, never sooner than `Retry-After`. Two mechanisms:

- `delay_s`: the exponential schedule (0.2 s doubling to 10 s), or the answer's `Retry-After`
  when longer (capped by `COTERM_VENDOR_RETRY_AFTER_MAX_S`, so a hostile header cannot park a
  call for a day), plus a uniform draw of up to one more step. Without the draw, 32 calls
  throttled at once would come back at once and be throttled again. The draw is added, never
  taken off: the schedule stays the least wait, so COTERM_VENDOR_MAX_ATTEMPTS outlasts the
  outage it always outlasted (a draw from zero, "full jitter", would halve that on average).
- `Limiter`: the calls out at once, shared by every vendor call of the process (additive
  increase, multiplicative decrease, as TCP does): each 429 halves the limit (once per
  `cooldown_s`, so one burst of 429s counts once), each answered call earns back a share of
  one slot. A throttled vendor sees fewer calls, not 32 retrying in step.
"""

import random
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for: a number of seconds, or an HTTP date (a date in
    the past is 0). None when absent or unreadable (then only the backoff applies)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


def delay_s(attempt: int, initial_s: float, max_s: float, retry_after: float | None, retry_after_max_s: float,
            draw: random.Random | None = None) -> float:
    """The wait before attempt `attempt + 1`: the schedule (`initial_s` doubling to `max_s`), or
    the `Retry-After` when longer, plus a uniform draw of up to one more step of the schedule."""
    step = min(initial_s * 2 ** (attempt - 1), max_s)
    floor = max(step, min(retry_after, retry_after_max_s)) if retry_after is not None else step
    return floor + (draw or random).uniform(0, step)


class Limiter:
    """At most `limit` calls out at once; `limit` moves between 1 and `ceiling` with the vendor's answers."""

    def __init__(self, ceiling: int, cooldown_s: float = 1.0) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.cooldown_s = cooldown_s
        self.out = 0
        self.most_out = 0  # the most calls out at once since the last `take_most_out`
        self.throttled = 0  # 429 answers seen
        self._last_cut = float("-inf")
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a slot; False when `stop` is set meanwhile."""
        with self._cond:
            while self.out >= int(self.limit):
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self.out += 1
            self.most_out = max(self.most_out, self.out)
            return True

    def try_acquire(self) -> bool:
        """A slot if one is free now (the transfer calls' thread, which never blocks on one)."""
        with self._cond:
            if self.out >= int(self.limit):
                return False
            self.out += 1
            self.most_out = max(self.most_out, self.out)
            return True

    def release(self, throttled: bool) -> None:
        with self._cond:
            self.out -= 1
            if throttled:
                self.throttled += 1
                now = time.monotonic()
                if now - self._last_cut >= self.cooldown_s:
                    self.limit = max(1.0, self.limit / 2)
                    self._last_cut = now
            else:
                self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            self._cond.notify_all()

    def take_most_out(self) -> int:
        """The most calls out at once since the last call of this (for the storm's figures)."""
        with self._cond:
            most, self.most_out = self.most_out, self.out
            return most
