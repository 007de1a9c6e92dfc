"""`coterm run`: the boring loop. Poll, apply per partition, repeat; the outbox runs beside it
in a process of its own (`outbox_process`), following what this loop records."""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from eventsourcing.persistence import InterfaceError, OperationalError
from kafka import TopicPartition
from kafka.errors import FencedInstanceIdError, InvalidSessionTimeoutError, KafkaError
from kafka.structs import MemberState

from processor import instance_id
from processor.consume.bulk_barrier import BulkBarrier
from processor.consume.inbox import Inbox
from processor.consume.partitions import PartitionCheck
from processor.kafka_io import (
    ResumeFromStore,
    caught_up,
    commit_positions,
    ensure_topics,
    lag,
    make_consumer,
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
    the outbox process keeps the read models current (`followers` run in this loop instead)."""
    _ensure_topics(settings, bootstrap)
    outbox = OutboxProcess(settings, bootstrap, log_path, read_models).start()
    status = outbox.status
    inbox = Inbox(app)
    # Static membership for a processor that keeps running; a run that ends when idle is a batch
    # job that will not come back, so it joins and leaves as a dynamic member.
    static = settings.kafka_static_membership and until_idle_s is None
    group = settings.group_options(static=static)
    slot = None
    if static and not group.get("group_instance_id"):
        slot = instance_id.claim(settings.group_id)
        group["group_instance_id"] = slot.id
    consumer = make_consumer(bootstrap, settings.group_id, group, **settings.kafka_options())
    check = PartitionCheck(settings.topic_orders, settings.topic_partitions,
                           partitions=len(consumer.partitions_for_topic(settings.topic_orders) or ()) or None)
    check.say()
    progress = Progress(partitions=check)
    consumer.subscribe([settings.topic_orders], listener=ResumeFromStore(consumer, inbox.resume_position, check.assigned))
    barrier = BulkBarrier(consumer)
    watch = FenceWatch(settings.kafka_heartbeat_interval_ms)
    last_input = time.monotonic()
    last_followed = 0.0
    server = None
    log.info("processor.started", group_id=settings.group_id, topic=settings.topic_orders, until_idle_s=until_idle_s,
             group_instance_id=group.get("group_instance_id"))
    try:
        server = metrics(inbox, progress, outbox) if metrics else None
        while not stop.is_set():
            barrier.release()
            batch = _poll(consumer, settings, group, watch)
            positions = _apply(consumer, barrier, inbox, batch, progress, stop)
            if positions:
                commit_positions(consumer, positions)
            now = time.monotonic()
            worked = 0
            if not batch or now - last_followed >= FOLLOW_EVERY_S:
                # e.g. read models, on the same log: in bigger, fewer batches while input flows
                last_followed = now
                try:
                    worked = sum(_to_the_end(follow, most=FOLLOW_SLICE if batch else 50_000) for follow in followers)
                except StoreUnavailable as error:
                    log.warning("read_models.unavailable", error=str(error)[:300])
            progress.holding = bool(consumer.assignment())
            progress.lag = lag(consumer)
            progress.caught_up = caught_up(progress.lag)
            outbox.ensure_alive()
            if batch or worked:
                last_input = now
            if not progress.holding or not status.ready.value or status.busy.value:
                last_input = now  # the group join and pending work do not count as idle
            progress.idle_for_s = now - max(last_input, status.worked_at.value)
            if on_progress:
                on_progress(progress, inbox, status)
            if until_idle_s is not None and progress.caught_up and progress.idle_for_s >= until_idle_s:
                log.info("processor.idle", idle_s=round(progress.idle_for_s, 1))
                break
    finally:
        if server is not None:
            server.stop()
        outbox.stop()
        consumer.close(autocommit=False)
        if slot is not None:
            slot.release()
        log.info("processor.stopped", received=progress.received, published=status.published.value)
    return 0


class GroupFenced(SettingsError):
    """Another process joined the group under this one's instance id: Kafka fenced this one."""


def _poll(consumer: Any, settings: Settings, group: dict[str, Any], watch: "FenceWatch") -> dict[TopicPartition, list[Any]]:
    """One poll; the broker's fatal group answers become one line for the operator (exit 2)."""
    try:
        batch = consumer.poll(timeout_ms=200, max_records=500)
    except InvalidSessionTimeoutError:
        raise SettingsError(
            f"COTERM_KAFKA_SESSION_TIMEOUT_MS={settings.kafka_session_timeout_ms}: the broker refused it; it must lie "
            "within the broker's group.min.session.timeout.ms and group.max.session.timeout.ms (6000 and 1800000 "
            "unless its operator changed them)") from None
    except FencedInstanceIdError:
        raise _fenced(settings, group) from None
    if watch.fenced(consumer):
        raise _fenced(settings, group)
    return batch  # type: ignore[no-any-return]


class FenceWatch:
    """Tells when Kafka has fenced this static member. kafka-python's heartbeat task, told so by the
    broker, only stops heartbeating: the member stays 'stable' and keeps its assignment, so polls
    would go on reading partitions that now belong to the newer process. A joined static member
    whose heartbeat stays off for several heartbeat intervals, with no rejoin under way, is that
    member (a join turns heartbeats off only for its round trip)."""

    def __init__(self, heartbeat_interval_ms: int) -> None:
        self.grace_s = max(2.0, 3 * heartbeat_interval_ms / 1000)
        self.since: float | None = None

    def fenced(self, consumer: Any) -> bool:
        c = getattr(consumer, "_coordinator", None)
        suspect = (c is not None and c.group_instance_id is not None and c.state == MemberState.STABLE
                   and not c._heartbeat_enabled and not c._heartbeat_closed and not c.rejoin_needed)
        if not suspect:
            self.since = None
            return False
        now = time.monotonic()
        self.since = self.since or now
        return now - self.since >= self.grace_s


def _fenced(settings: Settings, group: dict[str, Any]) -> GroupFenced:
    return GroupFenced(
        f"group {settings.group_id}: another processor joined as instance {group.get('group_instance_id')!r} and "
        "Kafka fenced this one, which stops; each running processor needs its own COTERM_KAFKA_GROUP_INSTANCE_ID "
        "(leave it unset for <host name>-<slot>)")


def _ensure_topics(settings: Settings, bootstrap: str) -> None:
    try:
        ensure_topics(bootstrap, [settings.topic_orders, settings.topic_results, settings.topic_deadletter],
                      partitions=settings.topic_partitions,
                      timeout_s=settings.kafka_connect_timeout_s, **settings.kafka_options())
    except KafkaError as error:  # an operator's setting, not a bug: one line, exit 2
        raise SettingsError(f"COTERM_KAFKA_BOOTSTRAP={bootstrap!r}: no Kafka broker answered within "
                            f"{settings.kafka_connect_timeout_s:g}s (COTERM_KAFKA_CONNECT_TIMEOUT_S): "
                            f"{type(error).__name__}") from None


def _apply(consumer: Any, barrier: BulkBarrier, inbox: Inbox, batch: dict[TopicPartition, list[Any]],
           progress: Progress, stop: threading.Event) -> dict[TopicPartition, int]:
    """Apply a polled batch, partition by partition; the positions to commit for what was applied."""
    positions: dict[TopicPartition, int] = {}
    try:
        for tp, polled in batch.items():
            records = barrier.admit(tp, polled)  # a bulk request may wait for the other partitions
            if not records:
                continue
            inbox.process(tp.topic, tp.partition, records)
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


def _to_the_end(follow: Callable[..., int], most: int = 50_000) -> int:
    done = 0
    while done < most:
        read = follow(limit=min(5000, most - done))
        if not read:
            break
        done += read
    return done
