"""What the processes beside a run's consumer share: a sleep that a stop cuts short, a name."""

import os
import threading
import time
from pathlib import Path

from processor.outbox.process_life import name_process, sleep_unless
from processor.outbox.process import Flag, _SPAWN


def test_a_stop_cuts_a_sleep_short_and_a_sleep_without_one_lasts() -> None:
    stop = Flag(_SPAWN.RawValue("b", False))
    started = time.monotonic()
    sleep_unless(stop, 0.12)
    assert time.monotonic() - started >= 0.12  # no stop: the whole time
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    sleep_unless(stop, 30.0)
    assert time.monotonic() - started < 10.0  # the stop, not the 30 s, ended it


def test_a_process_names_itself_for_ps() -> None:
    comm = Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/comm")
    before = comm.read_text()
    try:
        name_process("coterm-test-name-too-long")
        assert comm.read_text().strip() == "coterm-test-nam"  # Linux keeps 15 bytes
    finally:
        name_process(before.strip())
