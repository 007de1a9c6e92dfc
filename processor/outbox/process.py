"""The outbox in a process of its own, beside the consumer.

One Python process runs on one core (the GIL). Consuming and applying orders, and carrying
out what they decided (results to Kafka, vendor calls, their outcomes), each take a large
part of the work of a transfer, so `coterm run` runs them as processes sharing the store:
this one follows the store's log; the consumer's process applies Kafka input; a third keeps
the read models (`read_model_process`). They share only a few flags and counters
(`SharedStatus`): the consumer tells whether it has read all its input (for `--until-idle`),
the outbox whether it is busy (for `--until-idle`), whether it leads and what it has done.

The children die with their parent (Linux `PR_SET_PDEATHSIG`, `process_life`), so a killed
processor never leaves an outbox behind that would keep sending vendor calls or hold the
leadership.
"""

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from kafka.errors import KafkaError

from processor import collector, tracing
from processor.consume.inbox import utc_now
from processor.kafka_io import KafkaPublisher
from processor.log_setup import configure_logging
from processor.metrics import VENDOR_SLOTS, VendorStats
from processor.outbox.dispatch import Outbox
from processor.outbox.leadership import Leadership
from processor.outbox.process_life import Flag, die_with_parent, name_process
from processor.outbox.read_model_process import READ_SIDE, read_models_main
from processor.outbox.topic_ends import TopicEnds, store_positions
from processor.outbox.throttle import Limiter
from processor.outbox.vendor_client import VendorClient
from processor.outbox.vendor_status import VendorStatus
from processor.reconcile.schedule import Schedule
from processor.settings import Settings
from processor.store.opening import open_store, store_env
from processor.store.write_turns import Paths, WriteTurns
from projections.projection import read_models as read_model_tables

log = structlog.get_logger("coterm.outbox")
_SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks copied from the parent
OUTBOX = "coterm-outbox"  # the process's name, in `ps` (15 bytes at most) and `outbox.kill` lines
EXPIRY_EVERY_S = 1.0
OUTBOX_CACHE_SIZE = 20_000


@dataclass
class SharedStatus:
    stop: Any
    ready: Any  # the rest by the outbox's: it finished its first round
    busy: Any
    worked_at: Any  # time.monotonic() of the last round that did something (system-wide clock)
    published: Any
    pending_calls: Any
    waiting_halves: Any
    waiting_turn: Any  # calls waiting behind an earlier one on a common subscription
    outbox_position: Any  # the last store notification the outbox has read
    leading: Any  # this outbox holds the leadership: it sends the vendor calls
    vendor: Any  # `metrics.VendorStats.values`, copied after every round
    read_model_position: Any  # the read models' position, when this process keeps them
    read_models_caught_up_at: Any  # time.monotonic() when they last reached the store's head
    read_models_worked_at: Any  # time.monotonic() of the read models' last catch-up that read something
    read_models_stop: Any  # the read models' process stops (after the outbox's: it projects its last writes)
    consumer_wants: Any  # a turn at writing (`processor.store.write_turns`), each side says so
    outbox_wants: Any

    @classmethod
    def create(cls) -> "SharedStatus":
        # Plain shared memory, each value written by one side only: no locks, so no semaphores
        # and no resource-tracker process beside the two.
        def value(kind: str, initial: Any) -> Any:
            return _SPAWN.RawValue(kind, initial)

        return cls(stop=Flag(value("b", False)), ready=value("b", False),
                   busy=value("b", False), worked_at=value("d", 0.0),
                   published=value("q", 0), pending_calls=value("q", 0), waiting_halves=value("q", 0),
                   waiting_turn=value("q", 0),
                   outbox_position=value("q", 0), leading=value("b", False), vendor=_SPAWN.RawArray("d", VENDOR_SLOTS),
                   read_model_position=value("q", 0), read_models_caught_up_at=value("d", 0.0),
                   read_models_worked_at=value("d", 0.0), read_models_stop=Flag(value("b", False)),
                   consumer_wants=value("b", False), outbox_wants=value("b", False))


class OutboxProcess:
    """Starts, watches and stops the outbox process of one `coterm run`, and the read models'."""

    def __init__(self, settings: Settings, bootstrap: str, log_path: str | None, read_models: bool = False,
                 beside: Any = None) -> None:
        """`read_models`: a third process keeps the read models current while this run leads
        (`coterm run`; `read_model_process`). `beside`: the consumer's application, which takes
        turns at writing with the outbox's process until `stop`."""
        self.status = SharedStatus.create()
        self.turns = WriteTurns.create(mine=self.status.consumer_wants, theirs=self.status.outbox_wants)
        self.beside = beside
        if beside is not None and self.turns is not None:
            beside.turn = self.turns.turn
        self.args = (settings, bootstrap, log_path, self.turns.paths if self.turns else None)
        self.read_model_args = (settings, log_path) if read_models else None
        self.process: Any = None
        self.read_models: Any = None

    def start(self) -> "OutboxProcess":
        self.process = _SPAWN.Process(target=outbox_main, args=(*self.args, self.status, os.getpid()),
                                      name=OUTBOX, daemon=True)
        self.process.start()
        if self.read_model_args is not None and self.read_models is None:
            self._start_read_models()
        return self

    def _start_read_models(self) -> None:
        assert self.read_model_args is not None
        self.read_models = _SPAWN.Process(target=read_models_main, args=(*self.read_model_args, self.status, os.getpid()),
                                          name=READ_SIDE, daemon=True)
        self.read_models.start()

    def ensure_alive(self) -> None:
        """A crashed outbox or read-model process (a bug, a lost database) is started again from
        its stored positions."""
        if self.process is not None and not self.process.is_alive() and not self.status.stop.is_set():
            log.error("outbox.died", exitcode=self.process.exitcode)
            self.status.busy.value = False
            time.sleep(1.0)
            self.start()
        if self.read_models is not None and not self.read_models.is_alive() and not self.status.read_models_stop.is_set():
            log.error("read_models.died", exitcode=self.read_models.exitcode)
            time.sleep(1.0)
            self._start_read_models()

    def stop(self, timeout_s: float = 30.0) -> None:
        """The outbox first, then the read models, which project what it recorded last."""
        self.status.stop.set()
        for process, stop in ((self.process, None), (self.read_models, self.status.read_models_stop)):
            if stop is not None:
                stop.set()
            if process is None:
                continue
            process.join(timeout_s)
            if process.is_alive():
                log.warning("outbox.kill", process=process.name, after_s=timeout_s)
                process.kill()
                process.join(5)
        self._close_turns()

    def _close_turns(self) -> None:
        if self.beside is not None:
            self.beside.__dict__.pop("turn", None)  # it writes on alone, as before the run
        if self.turns is not None:
            self.turns.close()
            self.turns = None


def outbox_main(settings: Settings, bootstrap: str, log_path: str | None, turns_paths: Paths | None,
                status: SharedStatus, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    name_process(OUTBOX)
    # Ctrl-C reaches the whole process group: the parent finishes its batch, then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(open(log_path, "a", buffering=1) if log_path else sys.stderr, level=settings.log_level)
    tracing.configure()  # a process of its own: its spans need their own exporter
    collector.tune()
    # Room for every subscription and the transfers at their turn during a burst (a miss is a rebuild
    # from the store); transfers leave the cache when they end, and waiting halves are not cached here.
    app = _taking_turns(open_store(settings.store, cache_size=OUTBOX_CACHE_SIZE), turns_paths, status)
    _follow(app, settings, bootstrap, status, parent_pid)


def _vendor(settings: Settings, parent_pid: int, limiter: Limiter) -> VendorClient | None:
    if not settings.vendor_url:
        return None
    return VendorClient(settings.vendor_url, settings.vendor_max_attempts, sender=f"coterm-run/{parent_pid}",
                        retry_after_max_s=settings.vendor_retry_after_max_s, limiter=limiter)


def _reconciliation(settings: Settings, leadership: Leadership, limiter: Limiter, parent_pid: int) -> Schedule | None:
    """The scheduled reconciliation passes, run while this processor leads, through the calls' limiter."""
    if not settings.vendor_url or settings.reconcile_every_s <= 0:
        return None
    leadership.held()  # starts the lease's thread from this one
    return Schedule(settings, leadership.held, {"limiter": limiter, "sender": f"coterm-run/{parent_pid}"},
                    by=f"coterm run {leadership.holder}").start()


def _follow(app: Any, settings: Settings, bootstrap: str, status: SharedStatus, parent_pid: int) -> None:
    publisher = KafkaPublisher(bootstrap, settings.topic_results, settings.topic_deadletter, **settings.kafka_options())
    ends = TopicEnds(bootstrap, settings.topic_orders, settings.kafka_list_offsets, **settings.kafka_options())
    leadership = Leadership(store_env(settings.store))
    outbox: Outbox | None = None  # built on taking the lead, from the positions then stored
    limiter = Limiter(32, cooldown_s=1.0)  # calls out at once, shared by the calls and the reads, across leaderships
    vendor_stats = VendorStats(limiter)  # kept across leaderships: the counts of this process's life
    vendor_status = VendorStatus(read_model_tables(app, create=False), limiter, leadership.holder)  # for the dashboard
    last_expiry = 0.0
    schedule = _reconciliation(settings, leadership, limiter, parent_pid)

    def new_outbox() -> Outbox:
        return Outbox(app, publisher, _vendor(settings, parent_pid, limiter), settings.pairing_timeout_s, utc_now, vendor_stats,
                      topic_ends=ends.measure, store_positions=partial(store_positions, app.process_recorder, settings.topic_orders),
                      fence=leadership.fence, may_send=leadership.held)

    try:
        while not status.stop.is_set() and os.getppid() == parent_pid:
            worked = 0
            try:
                leading = leadership.held()
                if leading:
                    outbox = outbox or new_outbox()
                    expire = time.monotonic() - last_expiry >= EXPIRY_EVERY_S
                    last_expiry = time.monotonic() if expire else last_expiry
                    worked = _lead(outbox, status, expire)
                elif outbox is not None:
                    log.info("outbox.stepped_down", reason="the lease is not held")
                    outbox.close()  # another instance leads now: its outbox owns the calls
                    outbox = None
                vendor_status.round(leading)
            except KafkaError as error:
                # Nothing was marked published: the same results go out once Kafka answers.
                log.warning("results.publish_failed", error=str(error))
                status.stop.wait(1.0)
            except Exception as error:  # noqa: BLE001 - a lost database or a lost lease: start over from the store
                log.warning("outbox.round_failed", error=f"{type(error).__name__}: {error}"[:500])
                outbox = _closed(outbox)
                status.stop.wait(1.0)
            _report(status, outbox, worked, vendor_stats, knows_leader=leadership.asked)
            if not worked:
                status.stop.wait(0.01 if outbox is not None and outbox.in_flight else 0.05)
    finally:
        if schedule is not None:
            schedule.stop()
        if outbox is not None:
            outbox.close()
        leadership.release()
        ends.close()
        publisher.close()
        app.close()
        status.busy.value = False
        log.info("outbox.stopped", published=outbox.published if outbox else 0)


def _taking_turns(app: Any, turns_paths: Paths | None, status: SharedStatus) -> Any:
    """The outbox's side of the turns at writing with the consumer's process (`write_turns`)."""
    turns = WriteTurns.join(turns_paths, mine=status.outbox_wants, theirs=status.consumer_wants) if turns_paths else None
    if turns is not None:
        app.turn = turns.turn
    return app


def _closed(outbox: Outbox | None) -> None:
    """Close the outbox, if any: the next round that leads builds a new one from the store."""
    if outbox is not None:
        outbox.close()


def _lead(outbox: Outbox, status: SharedStatus, expire: bool) -> int:
    """One round of the leader's outbox; how much it did."""
    # Read to the head before sending: after a takeover, a call answered further on must not be sent again.
    worked = outbox.follow_to_head(status.stop) + outbox.dispatch()
    if outbox.decided:
        outbox.follow_to_head(status.stop)  # what the dispatcher just recorded
    return worked + (outbox.expire() if expire else 0)


def _report(status: SharedStatus, outbox: Any, worked: int, vendor_stats: VendorStats, knows_leader: bool) -> None:
    if worked:
        status.worked_at.value = time.monotonic()
        status.vendor[:] = vendor_stats.snapshot()
    if outbox is not None:
        status.published.value = outbox.published
        status.outbox_position.value = outbox.read_at
    try:
        status.busy.value = bool(outbox is not None and outbox.busy)
    except Exception:  # noqa: BLE001 - the store does not answer: say busy, the next round tells
        status.busy.value = True
    status.pending_calls.value = len(outbox.calls) if outbox is not None else 0
    status.waiting_halves.value = len(outbox.waiting) if outbox is not None else 0
    status.waiting_turn.value = len(outbox.waits_for) if outbox is not None else 0
    status.leading.value = outbox is not None
    # Ready (for `--until-idle`) once it leads or knows another does: an outbox that has not yet
    # asked for the lease would otherwise look idle while decided calls wait in the store.
    status.ready.value = outbox is not None or knows_leader
