"""Turns at writing between two processes (`processor.store.write_turns`): one at a time, a side
that wants a turn gets one from a side taking turn after turn, and neither a paused nor a killed
holder stops the other for good."""

import fcntl
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from processor.outbox.process import OutboxProcess
from processor.settings import Settings
from processor.store import write_turns
from processor.store.write_turns import WriteTurns
from tests.world import World

CTX = multiprocessing.get_context("spawn")  # as `coterm run` starts its outbox


def _flags() -> tuple[Any, Any]:
    return CTX.RawValue("b", False), CTX.RawValue("b", False)


def _take_turns(path: write_turns.Paths, mine: Any, theirs: Any, log: str, side: str, turns: int, hold_s: float, report: Any,
                started: Any) -> None:
    """The other process: `turns` turns, each writing its start and end around `hold_s`."""
    joined = WriteTurns.join(path, mine=mine, theirs=theirs)
    assert joined is not None
    started.set()
    with open(log, "a", buffering=1) as out:
        for _ in range(turns):
            with joined.turn():
                out.write(f"{side} start\n")
                time.sleep(hold_s)
                out.write(f"{side} end\n")
    report.put(joined.not_had)


def _hold_until_killed(path: write_turns.Paths, mine: Any, theirs: Any, holding: Any) -> None:
    joined = WriteTurns.join(path, mine=mine, theirs=theirs)
    assert joined is not None
    with joined.turn():
        holding.set()
        time.sleep(600)


def test_two_processes_never_write_at_once(tmp_path: Path) -> None:
    mine, theirs = _flags()
    turns = WriteTurns.create(mine=mine, theirs=theirs)
    assert turns is not None
    log, report, started = str(tmp_path / "log"), CTX.Queue(), CTX.Event()
    other = CTX.Process(target=_take_turns, args=(turns.paths, theirs, mine, log, "outbox", 40, 0.005, report, started))
    other.start()
    assert started.wait(60)
    with open(log, "a", buffering=1) as out:
        for _ in range(40):
            with turns.turn():
                out.write("consumer start\n")
                time.sleep(0.005)
                out.write("consumer end\n")
    assert report.get(timeout=60) == 0
    other.join(10)
    lines = Path(log).read_text().splitlines()
    assert len(lines) == 160
    for start, end in zip(lines[::2], lines[1::2], strict=True):  # each turn ends before the next starts
        assert start.endswith(" start") and end == start.replace("start", "end"), (start, end)
    turns.close()


def test_a_turn_ends_by_letting_the_side_that_wants_one_take_it() -> None:
    """The waiting side polls for the lock, so a side taking turn after turn would win the race
    again and again (seen: one wait of 3.2 s for a turn): a side that wants one says so, and the
    side ending its turn waits until it has taken it (at most `LET_GO_S`)."""
    mine, theirs = _flags()
    turns = WriteTurns.create(mine=mine, theirs=theirs)
    assert turns is not None
    theirs.value = True
    took = threading.Event()

    def other_takes_its_turn() -> None:
        time.sleep(0.05)
        took.set()
        theirs.value = False  # as `_take` does once it holds the lock

    threading.Thread(target=other_takes_its_turn).start()
    with turns.turn():
        pass
    assert took.is_set()  # the turn did not end before the other side had taken one
    theirs.value = True  # one that never takes it (paused) holds this side up for LET_GO_S only
    started = time.monotonic()
    with turns.turn():
        pass
    assert time.monotonic() - started >= write_turns.LET_GO_S
    turns.close()


def test_a_waiting_side_is_woken_not_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the other process holds its turn, the waiting side looks at the lock when told the
    turn is over and every `RETRY_S`: not every half millisecond (26 ms of CPU a second of waiting)."""
    mine, theirs = _flags()
    turns = WriteTurns.create(mine=mine, theirs=theirs)
    assert turns is not None
    holding = CTX.Event()
    other = CTX.Process(target=_hold_until_killed, args=(turns.paths, theirs, mine, holding))
    other.start()
    looks = 0
    lock_now = turns._lock_now

    def counted() -> bool:
        nonlocal looks
        looks += 1
        return lock_now()

    monkeypatch.setattr(turns, "_lock_now", counted)
    try:
        assert holding.wait(60)
        threading.Timer(0.5, lambda: os.kill(other.pid, signal.SIGKILL)).start()  # the kernel drops its lock
        with turns.turn():
            pass
        assert turns.not_had == 0
        assert looks <= 0.5 / write_turns.RETRY_S * 3, looks  # a poll every 0.5 ms would look ~1,000 times
    finally:
        other.kill()
        other.join(10)
    turns.close()


def test_a_waiting_side_takes_the_turn_once_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """The side that ends its turn says so down the waiting side's pipe: the waiting side looks at
    once, not at its next `RETRY_S`."""
    mine, theirs = _flags()
    turns = WriteTurns.create(mine=mine, theirs=theirs, wait_s=30)
    assert turns is not None
    joined = WriteTurns.join(turns.paths, mine=theirs, theirs=mine, wait_s=30)  # as the outbox's process does
    assert joined is not None
    monkeypatch.setattr(write_turns, "RETRY_S", 30.0)  # no looking again on its own: only the word ends a wait
    took = threading.Event()

    def waits() -> None:
        turns.owner = threading.get_ident()  # the thread that takes this side's turns
        with turns.turn():
            took.set()

    waiter = threading.Thread(target=waits)
    with joined.turn():
        waiter.start()
        while not mine.value:  # the waiting side says it wants the turn
            time.sleep(0.001)
        time.sleep(0.2)  # and has found the lock held: it waits for word
    assert took.wait(10)  # woken by `joined` letting go, long before RETRY_S
    waiter.join(10)
    joined.close()
    turns.close()


def test_a_paused_holder_holds_up_the_other_for_wait_s_only() -> None:
    mine, theirs = _flags()
    turns = WriteTurns.create(mine=mine, theirs=theirs, wait_s=0.3)
    assert turns is not None
    holding = CTX.Event()
    other = CTX.Process(target=_hold_until_killed, args=(turns.paths, theirs, mine, holding))
    other.start()
    try:
        assert holding.wait(60)
        os.kill(other.pid, signal.SIGSTOP)
        started = time.monotonic()
        with turns.turn():  # taken without the lock: the store's version checks still hold
            waited = time.monotonic() - started
        assert turns.not_had == 1
        assert waited >= 0.3
    finally:
        os.kill(other.pid, signal.SIGKILL)
        other.join(10)
    with turns.turn():  # the kernel dropped the killed process's lock
        pass
    assert turns.not_had == 1
    turns.close()


def test_a_turn_inside_a_turn_and_other_threads_do_not_wait() -> None:
    mine, theirs = _flags()
    turns = WriteTurns.create(mine=mine, theirs=theirs)
    assert turns is not None
    with turns.turn():
        with turns.turn():  # a batch split after a conflict: the same turn
            pass
        done = threading.Event()
        threading.Thread(target=lambda: (turns.turn().__enter__(), done.set())).start()
        assert done.wait(5)  # another thread of the process writes optimistically, as before
    assert turns.not_had == 0
    turns.close()


def test_a_run_gives_its_consumer_the_turns_until_it_stops() -> None:
    """`coterm run`'s consumer application takes turns while the run lasts (the outbox's process
    opens the same file), and writes alone again after it, on a closed file never."""
    app = World().app
    outbox = OutboxProcess(Settings.from_env({}), "127.0.0.1:9", None, beside=app)
    assert outbox.turns is not None
    assert app.turn == outbox.turns.turn
    joined = WriteTurns.join(outbox.args[-1], mine=outbox.status.outbox_wants, theirs=outbox.status.consumer_wants)
    assert joined is not None  # what the outbox's process does with the path it is given
    with app.turn():
        assert not outbox.status.consumer_wants.value  # wanted, then had
        with pytest.raises(BlockingIOError):
            fcntl.flock(joined.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    joined.close()
    outbox.stop()
    assert outbox.turns is None
    with app.turn():  # the class's own: no lock
        pass
    assert "turn" not in vars(app)
