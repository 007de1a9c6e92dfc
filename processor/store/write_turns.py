"""Turns at writing between the consumer's and the outbox's processes of one `coterm run`.

The consumer's process records new transfers and holds their seats on source subscriptions; the
outbox's records the vendor's answers, moving seats on the same subscriptions. Each computes its
transaction from the state it read, and the store's version check fails the one that commits
second: its whole batch is thrown away, every aggregate it changed is rebuilt from the store,
and the batch is computed again. In a 3,000-transfer burst of `make bench` the consumer applied
2,258 of its 6,000 records twice that way. Taking turns instead (one of the two at a time,
from reading state to committing) throws no work away; waiting for a turn costs time, not CPU,
so the consumer takes turns only for batches big enough to be worth it (`inbox.TURN_AT_RECORDS`).

A turn is an exclusive `flock` on one file that both processes open: the parent keeps it open
and unlinked, the outbox's process opens it again through `/proc` (a new open file description,
so the two exclude each other). The kernel drops the lock of a process that dies. One paused
while holding it (SIGSTOP) would hold up the other: a turn not had within `WAIT_S` is taken
without the lock, and the store's version checks keep every write right, as they do between
processors and with `coterm serve`. The turns are an optimisation, never a guarantee.

The waiting side polls (a blocking `flock` has no timeout), so a side that takes turn after turn
would always win: each side says when it wants a turn, and the other lets it have the next one.
Only the thread that made them takes turns (the processes' other threads write little and
keep to optimistic writes).
"""

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

log = structlog.get_logger("coterm.store")

WAIT_S = 2.0  # the longest wait for a turn; a consumer batch of 500 records takes ~0.1-0.5 s
LET_GO_S = 0.2  # how long a side that just had its turn waits for the other to take one it wants
POLL_S = 0.0005


class WriteTurns:
    """`mine`, `theirs`: shared flags (`multiprocessing` shared memory) saying each side wants a turn;
    `wait_s`: the longest wait for one."""

    def __init__(self, fd: int, mine: Any, theirs: Any, path: str, wait_s: float = WAIT_S) -> None:
        self.fd, self.mine, self.theirs, self.path, self.wait_s = fd, mine, theirs, path, wait_s
        self.owner = threading.get_ident()
        self.depth = 0  # a turn taken inside a turn (a batch split after a conflict) is the same turn
        self.not_had = 0  # turns taken without the lock (the other side held it past WAIT_S)

    @classmethod
    def create(cls, mine: Any, theirs: Any, wait_s: float = WAIT_S) -> "WriteTurns | None":
        """The parent's side: a lock file nobody else can name; None where `/proc` cannot reopen it."""
        try:
            fd, path = tempfile.mkstemp(prefix="coterm-turns-")
            os.unlink(path)
        except OSError as error:  # no writable temporary directory: optimistic writes alone
            log.warning("write_turns.unavailable", error=str(error))
            return None
        shared = f"/proc/{os.getpid()}/fd/{fd}"
        if not os.path.exists(shared):  # not Linux: optimistic writes alone, as before
            os.close(fd)
            return None
        return cls(fd, mine, theirs, shared, wait_s)

    @classmethod
    def join(cls, path: str, mine: Any, theirs: Any, wait_s: float = WAIT_S) -> "WriteTurns | None":
        """The other process's side, on the parent's file (None: it is gone, the parent with it)."""
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as error:
            log.warning("write_turns.unavailable", path=path, error=str(error))
            return None
        return cls(fd, mine, theirs, path, wait_s)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if self.depth or threading.get_ident() != self.owner:
            yield
            return
        held = self._take()
        self.depth = 1
        try:
            yield
        finally:
            self.depth = 0
            if held:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                self._let_go()

    def close(self) -> None:
        os.close(self.fd)

    def _take(self) -> bool:
        self.mine.value = True
        try:
            if _poll(self._lock_now, self.wait_s):
                return True
            self.not_had += 1
            log.info("write_turns.not_had", waited_s=self.wait_s, times=self.not_had)
            return False
        finally:
            self.mine.value = False

    def _lock_now(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _let_go(self) -> None:
        """The other side is waiting: let it take the lock before this side's next turn."""
        _poll(lambda: not self.theirs.value, LET_GO_S)


def _poll(ready: Callable[[], bool], seconds: float) -> bool:
    """Ask `ready` every POLL_S until it says yes (True) or `seconds` have passed (False): a
    blocking flock has no timeout, and the other side's flag is plain shared memory."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
