"""How the vendor treats coterm now, for the dashboard: the leading outbox's limiter (calls out
at once at most, 429s seen, when the last one came) written to the store's `status` table,
where `coterm serve`, another process and perhaps another host, reads it (`GET /api/vendor`).
The metrics (`coterm_vendor_concurrency_limit`, `coterm_vendor_throttled_total`) say the same
to Prometheus; this row is for the people at the dashboard."""

import time
from datetime import datetime, timezone
from typing import Any

from processor.outbox.throttle import Limiter

WRITE_EVERY_S = 1.0  # at most, while it changes
HEARTBEAT_S = 15.0  # at least, so the page can tell a stale row from a quiet vendor


class VendorStatus:
    def __init__(self, tables: Any, limiter: Limiter, holder: str) -> None:
        self.tables, self.limiter, self.holder = tables, limiter, holder
        self.last_throttled_at: str | None = None
        self._seen_throttled = limiter.throttled
        self._written: tuple[int, int] | None = None
        self._written_at = float("-inf")

    def round(self, leading: bool) -> None:
        """After each round of the outbox: the leader's row, when it changed or is getting old."""
        throttled, limit = self.limiter.throttled, int(self.limiter.limit)
        if throttled != self._seen_throttled:
            self._seen_throttled = throttled
            self.last_throttled_at = datetime.now(timezone.utc).isoformat()
        now = time.monotonic()
        changed = (throttled, limit) != self._written
        if not leading or now - self._written_at < (WRITE_EVERY_S if changed else HEARTBEAT_S):
            return
        self.tables.put_status("vendor", {
            "concurrency_limit": limit, "concurrency_max": self.limiter.ceiling, "calls_out": self.limiter.out,
            "throttled_total": throttled, "last_throttled_at": self.last_throttled_at, "holder": self.holder,
            "updated_at": datetime.now(timezone.utc).isoformat()})
        self._written, self._written_at = (throttled, limit), now
