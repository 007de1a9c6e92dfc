"""What the processes beside a `coterm run`'s consumer (the outbox's, the read models') share:
they die with their parent, and sleep without waking every few milliseconds."""

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


def sleep_unless(stop: Any, seconds: float) -> None:
    """Sleep `seconds`, or until `stop` (a shared flag) is set, looking at it every STOP_CHECK_S:
    on this kind of VM each wake-up costs many times the work it does, so an idle process wakes
    as seldom as its stop allows."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, STOP_CHECK_S))
