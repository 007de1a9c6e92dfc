"""Waiting for what a test expects to happen: one way, for every test."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "what was expected",
             interval: float = 0.1) -> T:
    """The condition's first truthy value. Exceptions count as not yet (a page still rendering, a
    store not yet written); the last one is named when time runs out."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - not yet
            last = error
        time.sleep(interval)
    raise AssertionError(f"never saw {what} within {timeout:g}s (last error: {last!r})")


def seconds_until(condition: Callable[[], object], timeout: float = 10.0) -> float:
    """How long the condition took to hold (a takeover time, say); fails after `timeout`."""
    started = time.monotonic()
    wait_for(condition, timeout, interval=0.05)
    return time.monotonic() - started
