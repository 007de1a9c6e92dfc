"""How far the orders topic has been written, and how far the store has applied it: the two
sides of the pairing-timeout rule (CONTRACT.md section 3, `PAIRING_TIMEOUT`, 1.2).

A half may expire only once every partition of the orders topic has been applied to the store,
by whichever processor holds it, up to an offset Kafka had reached after the half's deadline.
So the expirer measures both sides itself: `TopicEnds` asks Kafka for each partition's end,
and `store_positions` reads the positions the inbox recorded with the events (the library's
tracking records). No processor's assignment, flag or cache takes part.

Apache Kafka's ListOffsets (latest) answers the offset after a partition's last record (its
high watermark): the end, exactly, in one request (`exact`, the default). The bundled Tansu
broker answers the base offset of the last record batch plus one instead (measured: 37 records
sent in one batch per partition gave ends of 1 each), so on it (`COTERM_KAFKA_LIST_OFFSETS=
lower-bound`, which `coterm run` and the demo set when they start it) ListOffsets is only a
lower bound: each partition is read from just before it to the end of the log, and the end is
where that read stops (the fetch responses' high watermarks say when it has). One small fetch
per partition per check. tests/integration/test_topic_ends.py holds both to their broker.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from processor.consume.inbox import position_name


@dataclass(frozen=True)
class Ends:
    """Each partition's end offset, measured at `taken_at` (wall clock, seconds since the epoch)."""

    taken_at: float
    offsets: dict[int, int]

    def applied(self, positions: dict[int, int]) -> bool:
        """Whether the store has applied every partition at least up to these ends."""
        return all(positions.get(p, 0) >= end for p, end in self.offsets.items())


class TopicEnds:
    """Measures the end of every partition of one topic, with a consumer of its own (no group)."""

    def __init__(self, bootstrap: str, topic: str, list_offsets: str = "exact", clock: Callable[[], float] = time.time,
                 **options: Any) -> None:
        self.topic = topic
        self.exact = list_offsets == "exact"  # else "lower-bound": read on to the high watermark
        self.clock = clock
        self.consumer = KafkaConsumer(**options, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      fetch_max_wait_ms=10, client_id="coterm-topic-ends")
        self.partitions: list[TopicPartition] = []

    def measure(self, timeout_s: float = 5.0) -> Ends | None:
        """The ends now; None when Kafka did not answer in time (then nothing may expire)."""
        taken_at = self.clock()  # before asking: every offset read below was reached after it
        known = self.consumer.partitions_for_topic(self.topic) or set()
        if len(known) != len(self.partitions):
            self.partitions = [TopicPartition(self.topic, p) for p in sorted(known)]
            self.consumer.assign(self.partitions)
        if not self.partitions:
            return None
        try:
            lower = self.consumer.end_offsets(self.partitions, timeout_ms=int(timeout_s * 1000))
        except KafkaError:
            return None
        if self.exact:
            return Ends(taken_at, {tp.partition: lower[tp] for tp in self.partitions})
        for tp in self.partitions:
            self.consumer.seek(tp, max(0, lower[tp] - 1))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.consumer.poll(timeout_ms=50, max_records=100_000)
            if all(self._at_end(tp, lower[tp]) for tp in self.partitions):
                return Ends(taken_at, {tp.partition: self.consumer.position(tp) for tp in self.partitions})
        return None

    def _at_end(self, tp: TopicPartition, lower: int) -> bool:
        if lower == 0:
            return True  # the partition was empty when asked
        position, highwater = self.consumer.position(tp), self.consumer.highwater(tp)
        # Having read the record at lower-1 means a fetch answered after `taken_at`, with its
        # high watermark; reading on until that mark makes the position the partition's end.
        return position >= lower and highwater is not None and position >= highwater

    def close(self) -> None:
        self.consumer.close()


def store_positions(recorder: Any, topic: str, partitions: list[int]) -> dict[int, int]:
    """The next offset the store will apply, per partition (0: none applied yet)."""
    return {p: recorder.max_tracking_id(position_name(topic, p)) or 0 for p in partitions}


class Measurements:
    """Topic ends measured after some half's deadline passed, kept until the store's recorded
    positions reach them (then the halves due by then may expire: CONTRACT.md 1.2)."""

    def __init__(self, measure: Callable[[], Ends | None] | None,
                 positions: Callable[[list[int]], dict[int, int]] | None, keep: int = 300) -> None:
        self.measure, self.positions, self.keep = measure, positions, keep
        self.kept: deque[Ends] = deque()

    def __bool__(self) -> bool:
        return bool(self.kept)

    def take(self, now: datetime) -> None:
        measured = self.measure() if self.measure else Ends(now.timestamp(), {})
        if measured is not None:
            if len(self.kept) >= self.keep:
                del self.kept[1]  # the oldest is the one that can clear the most
            self.kept.append(measured)

    def cleared(self) -> Ends | None:
        """The latest measurement the store has applied, if any (and the ones before it are dropped)."""
        if not self.kept:
            return None
        positions = self.positions(sorted(self.kept[-1].offsets)) if self.positions else {}
        cleared = None
        while self.kept and self.kept[0].applied(positions):
            cleared = self.kept.popleft()
        return cleared
