"""kafka-python wiring: the consumer that resumes from the store, the outbound publisher, and the topics."""

import base64
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from processor.outbox.results import Outbound

log = structlog.get_logger("coterm.kafka")


class ResumeFromStore(ConsumerRebalanceListener):
    """On assignment, seek to the positions recorded in the store, not Kafka's committed offsets."""

    def __init__(self, consumer: KafkaConsumer, resume_position: Callable[[str, int], int | None],
                 on_assigned: Callable[[int], None] = lambda held: None) -> None:
        self.consumer = consumer
        self.resume_position = resume_position
        self.on_assigned = on_assigned  # how many partitions this member holds now (0 included)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            offset = self.resume_position(tp.topic, tp.partition)
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        log.info("partitions.assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
        self.on_assigned(len(assigned))

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions.revoked", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))


def make_consumer(bootstrap: str, group_id: str, group: dict[str, Any], **options: Any) -> KafkaConsumer:
    """`group`: `Settings.group_options()` (session timeout, heartbeat, poll interval, instance id);
    `options`: `Settings.kafka_options()` (security protocol, SASL, CA file)."""
    return KafkaConsumer(
        **options,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=f"{group_id}-consumer",
        enable_auto_commit=False,  # the store's tracking records are the positions
        auto_offset_reset="earliest",
        # Session timeout, heartbeat and max poll interval are settings (processor/settings.py):
        # Apache Kafka refuses a session timeout below group.min.session.timeout.ms (6 s by
        # default), so their defaults are ones it accepts. Heartbeats come from a thread of their
        # own, so a long batch does not miss them. The max poll interval is also the rebalance
        # timeout: a member stuck for a while (paused, or blocked on the database) holds the
        # group's rebalance up to this long, so it is short; a batch takes well under a second.
        **group,
        max_poll_records=500,
        # How long the broker holds a fetch while nothing new comes (Kafka's default). Both Apache
        # Kafka and Tansu answer as soon as a record arrives (delivery median 11-13 ms at 50 and at
        # 500 ms, measured on each); at 50 ms an idle consumer woke 20 times a second for nothing
        # (50 ms of CPU a second, 16 at 500).
        fetch_max_wait_ms=500,
    )


def lag(consumer: KafkaConsumer) -> dict[tuple[str, int], int | None]:
    """Messages behind the high watermark per assigned partition; None before its first fetch.

    The high watermark comes from fetch responses (the bundled broker's ListOffsets
    answer is not reliable), so until then a partition's lag is unknown.
    """
    behind: dict[tuple[str, int], int | None] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        behind[(tp.topic, tp.partition)] = None if highwater is None else max(0, highwater - consumer.position(tp))
    return behind


def caught_up(lags: dict[tuple[str, int], int | None]) -> bool:
    """True when partitions are assigned and every one is read up to its high watermark (an
    unknown lag counts as behind)."""
    return bool(lags) and all(behind == 0 for behind in lags.values())


# A dead letter carries its input in base64 (4/3 of its size): one for an input of Kafka's
# default 1 MiB limit must still go out, or the outbox would retry it forever.
MAX_MESSAGE_BYTES = 4 << 20


class KafkaPublisher:
    def __init__(self, bootstrap: str, results_topic: str, deadletter_topic: str, **options: Any) -> None:
        self.topics = {"result": results_topic, "deadletter": deadletter_topic}
        # Retries are left to the producer's delivery timeout (kafka-python's default, unbounded
        # retries within it): a broker failure moves partition leadership only once the controller
        # has fenced the dead broker (broker.session.timeout.ms, 9 s by default), longer than ten
        # quick retries lasted. `publish` still waits at most 30 s for the acknowledgements.
        self.producer = KafkaProducer(**options, bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                      client_id="coterm-publisher", max_request_size=MAX_MESSAGE_BYTES)

    def publish(self, messages: list[Outbound]) -> None:
        futures = [
            self.producer.send(self.topics[m.kind], key=m.key.encode() if m.key else None, value=fit(m).value,
                               headers=list(m.headers) or None)
            for m in messages
        ]
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused one: then nothing is marked published

    def close(self) -> None:
        self.producer.close(timeout=10)


def fit(message: Outbound, limit: int = MAX_MESSAGE_BYTES - 4096) -> Outbound:
    """A dead letter too big for Kafka goes out without its original bytes, saying where they are
    (the store keeps them: `coterm export`), rather than block every result behind it."""
    if len(message.value) <= limit or message.kind != "deadletter":
        return message
    letter = json.loads(message.value)
    size = len(base64.b64decode(letter["original"]))
    letter["error"] = (f"{letter['error']} [original of {size} bytes left out: larger than a dead letter may be; "
                       f"the store keeps it (coterm export)]")
    letter["original"] = ""
    return replace(message, value=json.dumps(letter).encode())


class TopicNotRead(RuntimeError):
    """A topic could not be read to its end in time: what was read is not all there is."""


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record on a topic, read until each partition reaches its high watermark.

    Raises `TopicNotRead` when the topic has no partitions or the read did not reach every
    partition's high watermark in time: an empty or short answer would let a "nothing was
    published" check pass when nothing was read."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50)
    try:
        deadline = time.monotonic() + timeout_s
        known = consumer.partitions_for_topic(topic)
        while not known and time.monotonic() < deadline:
            time.sleep(0.1)
            known = consumer.partitions_for_topic(topic)
        if not known:
            raise TopicNotRead(f"topic {topic!r} has no partitions on {bootstrap} (does it exist?)")
        partitions = [TopicPartition(topic, p) for p in sorted(known)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        while True:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
            behind = {tp.partition: (consumer.position(tp), consumer.highwater(tp)) for tp in partitions
                      if consumer.highwater(tp) is None or consumer.position(tp) < consumer.highwater(tp)}  # type: ignore[operator]
            if not behind:
                break
            if time.monotonic() > deadline:
                raise TopicNotRead(f"topic {topic!r} not read to its end within {timeout_s:g}s: "
                                   f"(position, high watermark) per partition behind: {behind}")
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))


class PositionMirror:
    """The store's positions mirrored to Kafka for lag dashboards; best effort, never the truth (a
    restart resumes from the store). At most every `every_s`: a commit after every poll cost the
    broker and this process's network thread a request each, 20-25 a second at 200 transfers/s."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s, self.pending, self.at = every_s, {}, float("-inf")  # type: ignore[var-annotated]

    def add(self, consumer: KafkaConsumer, positions: dict[Any, int]) -> None:
        self.pending.update(positions)
        if self.pending and time.monotonic() - self.at >= self.every_s:
            self.flush(consumer)

    def flush(self, consumer: KafkaConsumer, wait: bool = False) -> None:
        """Commit what is pending, of the partitions still held (a rebalance may have moved some);
        `wait`: for the broker's answer (a consumer about to close would drop the request)."""
        held = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self.pending.items() if tp in held}
        self.pending, self.at = {}, time.monotonic()
        if not offsets:
            return
        try:
            consumer.commit(offsets, timeout_ms=5000) if wait else consumer.commit_async(offsets)
        except Exception as error:  # noqa: BLE001 - a failed mirror must not stop processing
            log.warning("kafka.commit_failed", error=str(error))


def ensure_topics(bootstrap: str, topics: list[str], *, partitions: int, timeout_s: float = 30.0,
                  replication_factor: int = -1, **options: Any) -> None:
    """Create missing topics; safe to call from several processes at once. `replication_factor`
    -1 takes the broker's default.replication.factor (with its min.insync.replicas, what
    `acks=all` waits for)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            admin = KafkaAdminClient(**options, bootstrap_servers=bootstrap, client_id="coterm-admin",
                                     request_timeout_ms=10_000, bootstrap_timeout_ms=left_ms)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        # Every topic takes messages up to the size the publisher sends (a dead letter of a 1 MiB input).
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor,
                            topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)}) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
