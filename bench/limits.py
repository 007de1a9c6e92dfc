"""The limits of this machine, measured in the benchmark's own run: what kafka-python can consume
and what the event store can append, without coterm."""

import time

from eventsourcing.domain import Aggregate
from kafka import KafkaConsumer, TopicPartition

from bench.running import PARTITIONS, drop_schema
from processor.store.opening import open_store


def consume_rate(bootstrap: str, topic: str) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=500)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    ends = consumer.end_offsets(parts)
    consumer.seek_to_beginning(*parts)
    count, started = 0, time.perf_counter()
    while count < sum(ends.values()) - PARTITIONS and time.perf_counter() - started < 60:
        for records in consumer.poll(timeout_ms=200).values():
            count += len(records)
    consumer.close()
    return count / (time.perf_counter() - started)


def append_rate(store: str, total: int = 20_000, per_save: int = 100) -> float:
    class Probe(Aggregate):
        def __init__(self, n: int) -> None:
            self.n = n

    app = open_store(store)
    started = time.perf_counter()
    for _ in range(total // per_save):
        app.save(*(Probe(n) for n in range(per_save)))
    rate = total / (time.perf_counter() - started)
    app.close()
    drop_schema(store)
    return rate
