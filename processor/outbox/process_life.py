"""What the processes beside a `coterm run`'s consumer (the outbox's, the read models') share:
they die with their parent, and wait on stop flags in shared memory without waking every few
milliseconds."""

import ctypes
import os
import signal
import time
from typing import Any

STOP_CHECK_S = 0.05  # how soon a sleeping process sees its stop flag


def name_process(name: str) -> None:
    """The name `ps`, `top` and `/proc/<pid>/comm` show for this process (15 bytes at most; Linux),
    instead of the interpreter's: an operator, and `make bench`, tell the processes apart."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15] + b"\0")  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def die_with_parent(parent_pid: int) -> None:
    """Linux `PR_SET_PDEATHSIG`: a killed processor leaves no process behind that would keep
    sending vendor calls, holding the leadership or writing read models."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's stop flag and the check below remain
        pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


class Flag:
    """A stop flag in shared memory, with the part of `threading.Event` the processes' loops use."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def set(self) -> None:
        self.value.value = True

    def is_set(self) -> bool:
        return bool(self.value.value)

    def wait(self, timeout_s: float) -> bool:
        """Sleep `timeout_s`, or until set, looking every STOP_CHECK_S: on this kind of VM each
        wake-up costs many times the work it does, so an idle process wakes as seldom as its
        stop allows (a check every 10 ms woke an idle outbox five times a round)."""
        deadline = time.monotonic() + timeout_s
        while not self.is_set() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_S))
        return self.is_set()
