"""What the processes beside a run's consumer share: a wait that a stop cuts short, a name."""

import os
import threading
import time
from pathlib import Path

from processor.outbox.process import _SPAWN
from processor.outbox.process_life import Flag, name_process


def test_a_stop_cuts_a_wait_short_and_a_wait_without_one_lasts() -> None:
    stop = Flag(_SPAWN.RawValue("b", False))
    started = time.monotonic()
    assert not stop.wait(0.12)
    assert time.monotonic() - started >= 0.12  # no stop: the whole time
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert stop.wait(30.0)
    assert time.monotonic() - started < 10.0  # the stop, not the 30 s, ended it


def test_a_process_names_itself_for_ps() -> None:
    comm = Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/comm")
    before = comm.read_text()
    try:
        name_process("coterm-test-name-too-long")
        assert comm.read_text().strip() == "coterm-test-nam"  # Linux keeps 15 bytes
    finally:
        name_process(before.strip())
