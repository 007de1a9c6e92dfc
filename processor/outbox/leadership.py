"""Which processor instance runs the outbox (results, vendor calls, expiry): a lease in the store.

Consumers scale out by partition, but the outbox follows one shared log: two followers
would send the same vendor call twice. On PostgreSQL the outbox leader holds a lease, a row
of `coterm_leases` with an expiry set by the database's clock, renewed every `renew_s` by a
thread of its own (so a long round of work does not let it lapse). A leader that dies or stops
answering (SIGSTOP, a frozen VM, a lost network) stops renewing; once the lease has expired
another instance takes it, with a new epoch, within `ttl_s` plus one try.

A session lock would not do: a paused process keeps its database session, and the lock with
it, so leadership would never move. And a leader that resumes after losing its lease must not
act on it: every write of the outbox carries a `Fence` (holder and epoch) that the same
transaction checks against the row (`postgres_recorder.PostgresSeenRecorder`), and no new vendor call
starts once the lease may have lapsed by this process's own monotonic clock, which runs on
through a pause. A call already handed to the vendor may still be answered: same key, same
body, so the vendor sees a repeat at worst.

A SQLite store has one processor, which always leads.

The same thread, in every processor, ends a database session that holds a write lock on one
of coterm's tables while waiting for its own paused client (`STUCK_WRITER_S`): otherwise one
paused process stops everyone behind that lock for as long as it is paused. The event table's
insert lock stops every writer; the lease row, locked by a leader's fence inside each of its
writes, stops every takeover; read-model rows, locked by an upsert, stop the other processes'
projection, and with it the round in which they would take over. Storms caught all three.
"""

import os
import socket
import threading
import time
import uuid
from typing import Any

import psycopg
import structlog

from processor.store.opening import connect_postgres, is_postgres
from processor.store.recorders import LEASES, Fence

log = structlog.get_logger("coterm.leadership")
LEASE_NAME = "outbox"
TTL_S = 4.0
RENEW_S = 0.5
# A session that holds a write lock on coterm's tables while it waits for its own client for this
# long belongs to a process that stopped mid-write (SIGSTOP, a frozen VM): everyone needing that
# lock waits behind it (no coterm transaction waits on anything but the database). PostgreSQL's idle_in_transaction_session_timeout does not see it
# when the write is a pipeline not yet synced, so each processor ends such sessions itself.
STUCK_WRITER_S = 3.0


class Leadership:
    def __init__(self, store_env: dict[str, str], ttl_s: float = TTL_S, renew_s: float = RENEW_S) -> None:
        self.env = store_env
        self.shared = is_postgres(store_env)
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.schema = store_env.get("POSTGRES_SCHEMA", "public")
        self._epoch: int | None = None
        self._valid_until = 0.0  # monotonic: the lease surely holds until then (renewal sent before it)
        self._conn: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.acquired_at: float | None = None  # monotonic, for the takeover time in logs and tests
        # Whether this instance knows who leads: a store of its own (SQLite), or it has asked the
        # lease table once. Until then an outbox that does not lead may only not lead *yet*.
        self.asked = not self.shared
        self._warned = False

    # -- what the outbox asks ------------------------------------------------------------------
    def held(self) -> bool:
        """Whether this instance leads now, by its own clock (starts the renewing thread)."""
        if not self.shared:
            return True
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
            self._thread.start()
        return self._epoch is not None and time.monotonic() < self._valid_until

    def fence(self) -> Fence | None:
        """What a write under this lease must find in the store (None: nothing to prove)."""
        if not self.shared or self._epoch is None:
            return None
        return Fence(LEASE_NAME, self.holder, self._epoch)

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so the next leader need not wait for it to expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._conn is not None and self._epoch is not None:
            try:
                self._conn.execute(f"UPDATE {self._table} SET expires_at = now() WHERE name = %s AND holder = %s "
                                   "AND epoch = %s", (LEASE_NAME, self.holder, self._epoch))
            except Exception:  # noqa: BLE001 - it expires by itself anyway
                pass
        self._epoch = None
        self._drop()

    # -- the renewing thread ---------------------------------------------------------------
    @property
    def _table(self) -> str:
        return f'"{self.schema}"."{LEASES}"'

    def _run(self) -> None:
        while not self._stop.is_set():
            asked_at = time.monotonic()
            try:
                self._renew_or_acquire(asked_at)
                self.asked = True
            except psycopg.errors.LockNotAvailable:
                # The lease row is locked by a write of the leader still open (its fence): a busy
                # leader, or one stopped mid-write, which `_watch_writers` ends once it has waited
                # for its client long enough. Not an answer either way: ask again next time.
                self.asked = True
            except Exception as error:  # noqa: BLE001 - a lost database: not leading, try again
                if self._epoch is not None:
                    log.warning("leadership.lost", reason=f"{type(error).__name__}: {error}"[:300], epoch=self._epoch)
                self._epoch = None
                self._drop()
            self._watch_writers()
            self._stop.wait(self.renew_s)

    def _watch_writers(self) -> None:
        """A failure here (say, a role that may not end other sessions) must not cost the lease."""
        if self._conn is None:
            return
        try:
            self._free_stuck_writers()
        except psycopg.errors.InsufficientPrivilege as error:
            if not self._warned:
                self._warned = True
                log.warning("store.stuck_writers_unchecked", reason=str(error)[:300])
        except psycopg.Error as error:  # a lost connection: the renewal finds it next time
            log.warning("store.stuck_writers_check_failed", reason=str(error)[:300])
            self._drop()

    def _free_stuck_writers(self) -> None:
        rows = self._conn.execute(
            "SELECT a.pid, pg_terminate_backend(a.pid), EXTRACT(EPOCH FROM now() - a.query_start) "
            "FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND a.wait_event = 'ClientRead' "
            "AND a.query_start < now() - make_interval(secs => %s) AND EXISTS (SELECT 1 FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE l.pid = a.pid AND l.granted AND l.mode <> 'AccessShareLock' AND n.nspname = %s)",
            (STUCK_WRITER_S, self.schema)).fetchall()
        for pid, _, held_s in rows:
            log.warning("store.stuck_writer_ended", pid=pid, waited_for_client_s=round(float(held_s), 1))

    def _renew_or_acquire(self, asked_at: float) -> None:
        if self._conn is None:
            self._conn = connect_postgres(self.env, connect_timeout=2, tcp_timeout_ms=int(self.ttl_s * 500))
            # Waiting for the lease row's lock (a leader's fenced write holds it) must not keep this
            # thread from `_watch_writers`, which frees it when that leader stopped mid-write.
            # (Half its statement timeout, which would count as a lost database.)
            self._conn.execute(f"SET lock_timeout = {int(self.ttl_s * 250)}")
        if self._epoch is not None:
            row = self._conn.execute(
                f"UPDATE {self._table} SET expires_at = now() + make_interval(secs => %s) "
                "WHERE name = %s AND holder = %s AND epoch = %s RETURNING epoch",
                (self.ttl_s, LEASE_NAME, self.holder, self._epoch)).fetchone()
            if row is not None:
                self._valid_until = asked_at + self.ttl_s
                return
            log.warning("leadership.lost", reason="another instance took the lease", epoch=self._epoch)
            self._epoch = None
        row = self._conn.execute(
            f"INSERT INTO {self._table} (name, holder, epoch, expires_at) "
            "VALUES (%s, %s, 1, now() + make_interval(secs => %s)) "
            f"ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, epoch = {self._table}.epoch + 1, "
            "expires_at = EXCLUDED.expires_at "
            f"WHERE {self._table}.expires_at < now() RETURNING epoch",
            (LEASE_NAME, self.holder, self.ttl_s)).fetchone()
        if row is not None:
            self._valid_until = asked_at + self.ttl_s
            self._epoch = int(row[0])
            self.acquired_at = time.monotonic()
            log.info("leadership.acquired", epoch=self._epoch, holder=self.holder)

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        self._conn = None
