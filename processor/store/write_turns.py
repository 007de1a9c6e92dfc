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

A blocking `flock` has no timeout, so the waiting side tries the lock again whenever the other
side says it let go: a byte down a pipe of its own, which both processes open as they open the
lock file. A side that polled every half millisecond instead spent 26 ms of CPU a second of
waiting (the sleeps' wake-ups alone), 7% of the outbox's process and 4% of the consumer's in a
burst (py-spy). The byte is a hint, never needed for correctness: a side that hears nothing
tries again every `RETRY_S` (a holder that dies sends nothing; the kernel drops its lock). A
side that takes turn after turn would always win the race, so each side says when it wants a
turn, and the other lets it have the next one (and is told, the same way, once it has).
Only the thread that made them takes turns (the processes' other threads write little and
keep to optimistic writes).
"""

import contextlib
import fcntl
import os
import select
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

log = structlog.get_logger("coterm.store")

WAIT_S = 2.0  # the longest wait for a turn; a consumer batch of 500 records takes ~0.1-0.5 s
LET_GO_S = 0.2  # how long a side that just had its turn waits for the other to take one it wants
RETRY_S = 0.01  # how often a side that heard nothing looks again (a lost hint, a holder that died)

# Where the other process finds the turns: the lock file, the pipe that wakes the side that made
# them (the consumer's), the pipe that wakes the side that joined (the outbox's); `/proc` paths.
Paths = tuple[str, str, str]


class WriteTurns:
    """`mine`, `theirs`: shared flags (`multiprocessing` shared memory) saying each side wants a turn;
    `wake_me`, `wake_them`: this side's end of each pipe (read, write); `wait_s`: the longest wait
    for a turn; `kept`: descriptors held only so that the other process can open them."""

    def __init__(self, fd: int, mine: Any, theirs: Any, paths: Paths, wake_me: int, wake_them: int,
                 wait_s: float = WAIT_S, kept: tuple[int, ...] = ()) -> None:
        self.fd, self.mine, self.theirs, self.paths, self.wait_s = fd, mine, theirs, paths, wait_s
        self.wake_me, self.wake_them, self.kept = wake_me, wake_them, kept
        self.woken = select.poll()  # not `select.select`: it refuses a descriptor numbered 1024 or more
        self.woken.register(wake_me, select.POLLIN)
        self.owner = threading.get_ident()
        self.depth = 0  # a turn taken inside a turn (a batch split after a conflict) is the same turn
        self.not_had = 0  # turns taken without the lock (the other side held it past WAIT_S)

    @classmethod
    def create(cls, mine: Any, theirs: Any, wait_s: float = WAIT_S) -> "WriteTurns | None":
        """The parent's side: a lock file nobody else can name, and the two pipes; None where
        `/proc` cannot reopen them."""
        try:
            fd, path = tempfile.mkstemp(prefix="coterm-turns-")
            os.unlink(path)
        except OSError as error:  # no writable temporary directory: optimistic writes alone
            log.warning("write_turns.unavailable", error=str(error))
            return None
        proc = f"/proc/{os.getpid()}/fd"
        if not os.path.exists(f"{proc}/{fd}"):  # not Linux: optimistic writes alone, as before
            os.close(fd)
            return None
        wakes_me, wakes_them = (os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) for _ in range(2))  # (read, write) each
        paths = (f"{proc}/{fd}", f"{proc}/{wakes_me[1]}", f"{proc}/{wakes_them[0]}")
        return cls(fd, mine, theirs, paths, wake_me=wakes_me[0], wake_them=wakes_them[1], wait_s=wait_s,
                   kept=(wakes_me[1], wakes_them[0]))

    @classmethod
    def join(cls, paths: Paths, mine: Any, theirs: Any, wait_s: float = WAIT_S) -> "WriteTurns | None":
        """The other process's side, on the parent's file and pipes (None: they are gone, the
        parent with them)."""
        opened: list[int] = []
        try:
            for path, flags in zip(paths, (os.O_RDWR, os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK), strict=True):
                opened.append(os.open(path, flags))
        except OSError as error:
            for fd in opened:
                os.close(fd)
            log.warning("write_turns.unavailable", path=paths[len(opened)], error=str(error))
            return None
        fd, wake_them, wake_me = opened
        return cls(fd, mine, theirs, paths, wake_me=wake_me, wake_them=wake_them, wait_s=wait_s)

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
        for fd in (self.fd, self.wake_me, self.wake_them, *self.kept):
            os.close(fd)

    def _take(self) -> bool:
        self.mine.value = True
        waited = False
        try:
            if self._lock_now():
                return True
            waited = True
            if self._wait(self._lock_now, self.wait_s):
                return True
            self.not_had += 1
            log.info("write_turns.not_had", waited_s=self.wait_s, times=self.not_had)
            return False
        finally:
            self.mine.value = False
            if waited:
                self._wake()  # the side that let go waits in `_let_go` until it hears this one had its turn

    def _lock_now(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _let_go(self) -> None:
        """The other side is waiting: tell it, and let it take the lock before this side's next turn."""
        if self.theirs.value:
            self._wake()
            self._wait(lambda: not self.theirs.value, LET_GO_S)

    def _wake(self) -> None:
        """A byte down the other side's pipe: look again now. A full pipe already says so."""
        try:
            os.write(self.wake_them, b"\0")
        except BlockingIOError:
            pass

    def _wait(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Ask `ready` whenever the other side wakes this one, and every `RETRY_S` anyway, until
        it says yes (True) or `seconds` have passed (False)."""
        deadline = time.monotonic() + seconds
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.woken.poll(min(left, RETRY_S) * 1000):
                try:
                    os.read(self.wake_me, 4096)  # every hint so far: one look answers them all
                except BlockingIOError:
                    pass
        return True
