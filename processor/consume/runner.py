"""`coterm run`: the boring loop. Poll, apply per partition, repeat; the outbox runs beside it
in a process of its own (`outbox_process`), following what this loop records."""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from eventsourcing.persistence import InterfaceError, OperationalError
from kafka import TopicPartition
from kafka.errors import KafkaError

from processor.consume.bulk_barrier import BulkBarrier
from processor.consume.inbox import Inbox, Part
from processor.consume.membership import Membership
from processor.consume.partitions import PartitionCheck
from processor.kafka_io import (
    PositionMirror,
    ResumeFromStore,
    caught_up,
    ensure_topics,
    lag,
)
from processor.outbox.process import OutboxProcess, SharedStatus
from processor.settings import Settings, SettingsError
from processor.store.stored_orders import StoredOrders

log = structlog.get_logger("coterm.runner")
StoreUnavailable = (OperationalError, InterfaceError)
# While input flows, followers (read models) catch up at most this often, by a bounded slice of
# the log (each row a slice touches is read and written once): a long catch-up would hold up
# the next poll and show as pairing latency. When input pauses they catch up to the end.
FOLLOW_EVERY_S = 0.5
FOLLOW_SLICE = 2000


@dataclass
class Progress:
    received: int = 0
    holding: bool = False
    caught_up: bool = False
    idle_for_s: float = 0.0
    lag: dict[tuple[str, int], int | None] = field(default_factory=dict)  # (topic, partition) -> behind
    partitions: PartitionCheck | None = None


def run(app: StoredOrders, settings: Settings, bootstrap: str, stop: threading.Event, until_idle_s: float | None = None,
        on_progress: Callable[[Progress, Inbox, SharedStatus], None] | None = None,
        followers: Sequence[Callable[..., int]] = (), log_path: str | None = None,
        metrics: Callable[[Inbox, Progress, OutboxProcess], Any] | None = None, read_models: bool = False) -> int:
    """`log_path`: where the outbox process writes its log lines (default: standard error).
    `metrics`: starts a metrics server over this run's counters; it has `stop()`. `read_models`:
    a process of their own keeps the read models current (`followers` run in this loop instead)."""
    _ensure_topics(settings, bootstrap)
    outbox = OutboxProcess(settings, bootstrap, log_path, read_models, beside=app).start()
    status = outbox.status
    inbox = Inbox(app)
    progress = Progress(partitions=PartitionCheck(settings.topic_orders, settings.topic_partitions))
    member = Membership(settings, until_idle_s, bootstrap, partial(_subscribe, settings=settings, inbox=inbox,
                                                                   check=progress.partitions))
    barrier = BulkBarrier(member.consumer)
    last_input, last_followed, server, mirror = time.monotonic(), 0.0, None, PositionMirror()
    log.info("processor.started", group_id=settings.group_id, topic=settings.topic_orders, until_idle_s=until_idle_s,
             group_instance_id=member.instance_id)
    try:
        server = metrics(inbox, progress, outbox) if metrics else None
        while not stop.is_set():
            barrier.release()
            batch = member.poll()
            consumer = member.consumer
            if barrier.consumer is not consumer:  # a new consumer replaced a hung join (JoinWatch)
                barrier = BulkBarrier(consumer)
            positions = _apply(consumer, barrier, inbox, batch, progress, stop)
            mirror.add(consumer, positions)
            now = time.monotonic()
            worked = 0
            if not batch or now - last_followed >= FOLLOW_EVERY_S:
                last_followed = now
                worked = _follow_log(app, followers, bool(batch))
            progress.holding = bool(consumer.assignment())
            progress.lag = lag(consumer)
            progress.caught_up = caught_up(progress.lag)
            outbox.ensure_alive()
            if batch or worked:
                last_input = now
            if not progress.holding or not status.ready.value or status.busy.value:
                last_input = now  # the group join and pending work do not count as idle
            progress.idle_for_s = now - max(last_input, status.worked_at.value, status.read_models_worked_at.value)
            if on_progress:
                on_progress(progress, inbox, status)
            if until_idle_s is not None and progress.caught_up and progress.idle_for_s >= until_idle_s:
                log.info("processor.idle", idle_s=round(progress.idle_for_s, 1))
                break
    finally:
        if server is not None:
            server.stop()
        outbox.stop()
        mirror.flush(member.consumer, wait=True)  # best effort, as every commit: the store holds the positions
        member.close()
        log.info("processor.stopped", received=progress.received, published=status.published.value)
    return 0


def _subscribe(consumer: Any, settings: Settings, inbox: Inbox, check: PartitionCheck) -> None:
    """Subscribe to the orders topic, resuming each partition assigned from the store's position."""
    if check.partitions is None:
        check.partitions = len(consumer.partitions_for_topic(settings.topic_orders) or ()) or None
        check.say()
    consumer.subscribe([settings.topic_orders], listener=ResumeFromStore(consumer, inbox.resume_position, check.assigned))


def _ensure_topics(settings: Settings, bootstrap: str) -> None:
    try:
        ensure_topics(bootstrap, [settings.topic_orders, settings.topic_results, settings.topic_deadletter],
                      partitions=settings.topic_partitions, replication_factor=settings.topic_replication_factor,
                      timeout_s=settings.kafka_connect_timeout_s, **settings.kafka_options())
    except KafkaError as error:  # an operator's setting, not a bug: one line, exit 2
        raise SettingsError(f"COTERM_KAFKA_BOOTSTRAP={bootstrap!r}: no Kafka broker answered within "
                            f"{settings.kafka_connect_timeout_s:g}s (COTERM_KAFKA_CONNECT_TIMEOUT_S): "
                            f"{type(error).__name__}") from None


def _apply(consumer: Any, barrier: BulkBarrier, inbox: Inbox, batch: dict[TopicPartition, list[Any]],
           progress: Progress, stop: threading.Event) -> dict[TopicPartition, int]:
    """Apply a polled batch, its partitions together (`Inbox.process_poll`); the positions to
    commit for what was applied."""
    positions: dict[TopicPartition, int] = {}
    try:
        admitted = {tp: barrier.admit(tp, polled) for tp, polled in batch.items()}  # a bulk request may wait
        ordered = barrier.in_order({tp: records for tp, records in admitted.items() if records})  # for the others
        inbox.process_poll([Part(tp.topic, tp.partition, records) for tp, records in ordered])
        for tp, records in ordered:
            positions[tp] = records[-1].offset + 1
            progress.received += len(records)
    except StoreUnavailable as error:
        # The database did not answer (the library retried for a few seconds): read the
        # batches not applied again, from where they began, once it answers. Never skip them.
        for tp, polled in batch.items():
            if tp not in positions and polled:
                consumer.seek(tp, polled[0].offset)
        log.warning("store.unavailable", error=str(error)[:300])
        stop.wait(1.0)
    return positions


def _follow_log(app: StoredOrders, followers: Sequence[Callable[..., int]], busy: bool) -> int:
    """What follows the store's log in this loop: the followers (e.g. read models), in bigger,
    fewer slices while input flows; and, when no input came, this process's cache, brought up to
    what the outbox recorded meanwhile. Left to the next batch, that catch-up delayed it: the
    first transfers after a burst waited 300-440 ms for their pair to be decided (the burst's
    outcomes, 12,000 events, read before their batch), those later in the same phase 28-85 ms on
    average. Returns how many notifications the followers read."""
    try:
        if not busy:
            app.refresh_cache()
        return sum(_to_the_end(follow, most=FOLLOW_SLICE if busy else 50_000) for follow in followers)
    except StoreUnavailable as error:  # the next round tries again; a batch meanwhile refreshes first anyway
        log.warning("store.unavailable", during="following the log", error=str(error)[:300])
        return 0


def _to_the_end(follow: Callable[..., int], most: int = 50_000) -> int:
    done = 0
    while done < most:
        read = follow(limit=min(5000, most - done))
        if not read:
            break
        done += read
    return done
