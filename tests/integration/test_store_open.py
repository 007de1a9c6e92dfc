"""Opening a store: several processes starting together on a fresh database all succeed."""

import subprocess
import sys

OPEN = "import sys; from processor.store.opening import open_store; open_store(sys.argv[1]).close()"


def test_processes_opening_a_fresh_store_together_all_succeed(store: str) -> None:
    # Each process creates the event, tracking and read-model tables; PostgreSQL fails
    # one of two concurrent CREATE ... IF NOT EXISTS unless they take turns.
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, store], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    failures = [err for proc in procs if (err := proc.communicate(timeout=120)[1]) and proc.returncode != 0]
    assert failures == []
    assert all(proc.returncode == 0 for proc in procs)
