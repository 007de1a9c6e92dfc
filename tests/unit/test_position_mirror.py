"""The store's positions mirrored to Kafka for lag dashboards (`kafka_io.PositionMirror`): at
most once a second, not after every poll, only for partitions still held, and what is pending
when a run stops goes out, waited for."""

from typing import Any

from kafka import TopicPartition

from processor.kafka_io import PositionMirror


class Consumer:
    """What the mirror asks of a consumer: its partitions, and commits (kept, not sent)."""

    def __init__(self, held: set[TopicPartition]) -> None:
        self.held = held
        self.commits: list[tuple[str, dict[TopicPartition, int]]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.held

    def commit_async(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(("async", {tp: o.offset for tp, o in offsets.items()}))

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        self.commits.append(("waited", {tp: o.offset for tp, o in offsets.items()}))


def test_positions_go_to_kafka_at_most_once_a_second_and_what_is_pending_on_stopping() -> None:
    p0, p1, p2 = (TopicPartition("orders", p) for p in range(3))
    consumer, mirror = Consumer({p0, p1}), PositionMirror(every_s=60.0)
    mirror.add(consumer, {p0: 10})  # the first goes at once
    mirror.add(consumer, {p0: 12, p1: 4})  # within the minute: pending
    mirror.add(consumer, {})  # a poll that brought nothing
    assert consumer.commits == [("async", {p0: 10})]
    mirror.add(consumer, {p2: 7})  # a partition a rebalance has since taken away
    mirror.flush(consumer, wait=True)  # the run stops
    assert consumer.commits[1:] == [("waited", {p0: 12, p1: 4})]
    mirror.flush(consumer, wait=True)
    assert len(consumer.commits) == 2  # nothing pending: nothing sent
    mirror.every_s = 0.0
    mirror.add(consumer, {p1: 9})
    assert consumer.commits[2:] == [("async", {p1: 9})]
