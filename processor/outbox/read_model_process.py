"""The read models in a process of their own, beside the consumer's and the outbox's.

In a burst the outbox's process finishes last: once the consumer has applied its input, the
outbox records the vendor's answers and publishes the results on one core, and the read models'
catch-ups took a quarter of each of its rounds (`make bench`, 3,000 transfers: 100-230 ms of
rounds of 500-900 ms) while the other core was half idle. Here they catch up on whichever core
is free, and the outbox's rounds carry out calls only.

They are kept by one process of all the processors on a store: the one whose outbox leads (the
outbox process says so in `SharedStatus.leading`); the others look now and then how far they
are, for readiness. A run that stops while it leads leaves them current: this process stops
after the outbox's (`OutboxProcess.stop`), and catches up with what it recorded last. Its writes
take no turn (`write_turns`): they touch only the read-model tables, never an aggregate the
other two compute from, so none is ever thrown away; on SQLite they wait for the store's write
lock as any writer does.
"""

import os
import signal
import sys
import time
from typing import Any

import structlog

from processor import collector
from processor.log_setup import configure_logging
from processor.outbox.process_life import die_with_parent, name_process
from processor.settings import Settings
from processor.store.opening import open_store
from projections.projection import Projection

log = structlog.get_logger("coterm.read_models")
READ_SIDE = "coterm-readside"  # the process's name, in `ps` (15 bytes at most)
READ_MODEL_SLICE = 2000  # notifications projected per catch-up: a stop or a loss of the lead waits for one at most
# The read models catch up at most this often unless a slice left more behind: a catch-up for
# every few events rewrote the same rows for each (`/readyz` allows seconds).
READ_MODEL_EVERY_S = 0.25
OBSERVE_EVERY_S = 0.5  # how often a run that does not lead looks how far the read models are


def tell(status: Any, projection: Projection, position: int) -> None:
    """How far the read models are, for `/readyz` and the metrics of the consumer's process."""
    status.read_model_position.value = position
    status.read_models_caught_up_at.value = projection.caught_up_at


class KeptReadModels:
    """The read models are shared tables: the leader keeps them, one slice a round; the others
    look now and then how far they are (for readiness). Each processor projecting every event
    cost CPU once per processor, and their upserts of the same rows waited on each other's locks."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.observed_at = 0.0
        self.projected_at = 0.0
        self.behind = False  # the last catch-up read a whole slice: more waits

    def round(self, status: Any, leading: bool) -> int:
        if leading:
            if not self.behind and time.monotonic() - self.projected_at < READ_MODEL_EVERY_S:
                return 0
            self.projected_at = time.monotonic()
            read = project_slice(self.projection, status)
            self.behind = read >= READ_MODEL_SLICE
            return read
        if time.monotonic() - self.observed_at >= OBSERVE_EVERY_S:
            self.observed_at = time.monotonic()
            tell(status, self.projection, self.projection.look())
        return 0

    def next_round_in(self, leading: bool) -> float:
        """How long there is nothing to do: none when a slice left more behind, else until the
        next catch-up (leading) or look (not leading) is due."""
        if leading and self.behind:
            return 0.0
        due = self.projected_at + READ_MODEL_EVERY_S if leading else self.observed_at + OBSERVE_EVERY_S
        return max(0.0, due - time.monotonic())


def project_slice(projection: Projection, status: Any) -> int:
    """Keep the read models current, one slice per round: a long catch-up (a restart, a burst)
    must not hold up a stop or the loss of the lead."""
    read = projection.catch_up(limit=READ_MODEL_SLICE)
    tell(status, projection, projection.position)
    return read


def catch_up_before_stopping(projection: Projection, status: Any) -> None:
    """A stopping `run` that leads leaves the read models current."""
    try:
        while project_slice(projection, status):
            pass
    except Exception as error:  # noqa: BLE001 - the store went away: the next start projects on from there
        log.warning("read_models.final_catch_up_failed", error=f"{type(error).__name__}: {error}"[:300])


def read_models_main(settings: Settings, log_path: str | None, status: Any, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    name_process(READ_SIDE)
    # Ctrl-C reaches the whole process group: the parent stops the outbox, then this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(open(log_path, "a", buffering=1) if log_path else sys.stderr, level=settings.log_level)
    collector.tune()
    app = open_store(settings.store, cached=False)  # it rebuilds no aggregate: rows come from the events
    kept = KeptReadModels(Projection(app))
    try:
        while not status.read_models_stop.is_set() and os.getppid() == parent_pid:
            leading = bool(status.leading.value)
            try:
                if kept.round(status, leading):
                    status.read_models_worked_at.value = time.monotonic()
            except Exception as error:  # noqa: BLE001 - a lost database: the next round starts from the stored position
                log.warning("read_models.round_failed", error=f"{type(error).__name__}: {error}"[:500])
                status.read_models_stop.wait(1.0)
            status.read_models_stop.wait(kept.next_round_in(leading))
        if os.getppid() == parent_pid and status.leading.value:
            catch_up_before_stopping(kept.projection, status)
    finally:
        app.close()
        log.info("read_models.stopped", position=status.read_model_position.value)  # as last told: the store is closed
