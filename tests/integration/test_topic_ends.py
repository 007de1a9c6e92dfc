"""How far a partition is written, on each broker as it answers ListOffsets (processor/outbox/topic_ends.py).

The pairing timeout may expire a half only once the store has applied every partition up to
its end; an end measured short would let a half expire while its partner sits unread."""

import uuid
from typing import Any

import pytest
from kafka import KafkaProducer

from processor.dev.broker import ON_BUNDLED_BROKER, BundledBroker
from processor.kafka_io import ensure_topics
from processor.outbox.topic_ends import TopicEnds


def _written_in_one_batch(bootstrap: str, topic: str, per_partition: int = 37) -> None:
    ensure_topics(bootstrap, [topic], partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=200, batch_size=1 << 20)
    for partition in range(3):
        for i in range(per_partition):
            producer.send(topic, value=b"x" * 10, key=str(i).encode(), partition=partition)
    producer.flush()
    producer.close()


def test_on_the_suite_broker_listoffsets_is_the_end(broker: Any) -> None:
    if broker.kind == "tansu":
        pytest.skip("the suite runs on the bundled broker here (no Java): the next test covers it")
    topic = f"ends-exact-{uuid.uuid4().hex[:8]}"
    _written_in_one_batch(broker.bootstrap, topic)
    exact = TopicEnds(broker.bootstrap, topic)
    measured = exact.measure()
    exact.close()
    assert measured is not None and measured.offsets == {0: 37, 1: 37, 2: 37}


def test_on_the_bundled_broker_listoffsets_is_only_a_lower_bound_and_the_workaround_reads_on(tansu: BundledBroker) -> None:
    topic = f"ends-tansu-{uuid.uuid4().hex[:8]}"
    _written_in_one_batch(tansu.bootstrap, topic)
    exact = TopicEnds(tansu.bootstrap, topic, "exact")
    short = exact.measure()
    exact.close()
    # Tansu answers the last batch's base offset + 1: why coterm sets lower-bound when it starts it.
    assert short is not None and all(end < 37 for end in short.offsets.values())
    assert ON_BUNDLED_BROKER["kafka_list_offsets"] == "lower-bound"
    read_on = TopicEnds(tansu.bootstrap, topic, "lower-bound")
    measured = read_on.measure()
    read_on.close()
    assert measured is not None and measured.offsets == {0: 37, 1: 37, 2: 37}
