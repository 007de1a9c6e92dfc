"""Which processor instance runs the outbox (results, vendor calls, expiry).

Consumers scale out by partition, but the outbox follows one shared log: two followers
would send the same vendor call twice. On PostgreSQL the instance holding a session
advisory lock does the outbox work; when it dies its session ends and another takes
over. A SQLite store has one processor, which always leads.
"""

import time
import zlib

import structlog

from processor.store import connect_postgres

log = structlog.get_logger("coterm.leadership")


class Leadership:
    def __init__(self, store_env: dict[str, str], retry_s: float = 1.0) -> None:
        self.env = store_env
        self.shared = store_env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
        self.retry_s = retry_s
        self._conn: object | None = None
        self._leading = False
        self._next_try = 0.0
        # One lock per store: the schema names it, so test stores in one database don't contend.
        self.key = zlib.crc32(f"coterm-outbox:{store_env.get('POSTGRES_SCHEMA', '')}".encode())

    def held(self) -> bool:
        if not self.shared:
            return True
        if self._leading:
            if self._alive():
                return True
            log.warning("leadership.lost")
            self._leading = False
        now = time.monotonic()
        if now >= self._next_try:
            self._next_try = now + self.retry_s
            self._leading = self._try_acquire()
            if self._leading:
                log.info("leadership.acquired")
        return self._leading

    def _try_acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None:
                self._conn = connect_postgres(self.env, connect_timeout=5)
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()  # type: ignore[attr-defined]
            return bool(row and row[0])
        except psycopg.Error:
            self._drop()
            return False

    def _alive(self) -> bool:
        import psycopg

        try:
            self._conn.execute("SELECT 1")  # type: ignore[union-attr]
            return True
        except (psycopg.Error, AttributeError):
            self._drop()
            return False

    def _drop(self) -> None:
        try:
            self._conn.close()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - already broken
            pass
        self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            self._drop()
