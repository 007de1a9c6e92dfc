"""A bulk migration waits until what was published before it on the other partitions is applied.

Customers are keyed by customer and a bulk by partner (CONTRACT.md sections 2 and 5): on
different partitions nothing orders them, and a bulk decided before its customers'
registrations reached the store would refuse them `CUSTOMER_UNKNOWN`. So when a polled batch
holds a `migration.bulk_requested`, the consumer applies the records before it, pauses that
partition at the bulk, and notes how far each other partition it holds had been written
(its high watermark). Once it has read that far, it resumes: the bulk is decided on
everything published before it. A partition held back by a bulk of its own counts as read
up to that bulk, so two bulks never wait for each other. Only partitions this consumer holds
are covered: with several processors, publish reference data before the bulk.
"""

from typing import Any

import structlog
from kafka import TopicPartition

log = structlog.get_logger("coterm.bulk_barrier")
MARK = b'"migration.bulk_requested"'  # a cheap byte test on every record; parsing is the inbox's


class BulkBarrier:
    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        # paused partition -> (the bulk's offset, other partition -> position to reach, None: not known yet)
        self.waiting: dict[TopicPartition, tuple[int, dict[TopicPartition, int | None]]] = {}
        self.cleared: dict[TopicPartition, int] = {}  # the bulk offset each partition may now apply

    def admit(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records to apply now: all of them, or those before a bulk request that has to
        wait (its partition is then paused and rewound to it)."""
        for i, record in enumerate(records):
            if not (record.value and MARK in record.value) or self.cleared.get(tp) == record.offset:
                continue
            held = self.waiting.get(tp)
            required = held[1] if held and held[0] == record.offset else self._watermarks(tp)
            if self._reached(tp, required):
                self.cleared[tp] = record.offset
                continue
            self.waiting[tp] = (record.offset, required)
            self.consumer.seek(tp, record.offset)
            self.consumer.pause(tp)
            log.info("bulk.waits_for_other_partitions", partition=f"{tp.topic}:{tp.partition}", offset=record.offset,
                     until={f"{o.topic}:{o.partition}": p for o, p in required.items()})
            return records[:i]
        return records

    def in_order(self, admitted: dict[TopicPartition, list[Any]]) -> list[tuple[TopicPartition, list[Any]]]:
        """The admitted records of one poll in the order to apply them: a partition holding a bulk
        goes after the others. The bulk was let through because the other partitions are read
        far enough, and what this same poll read of them is applied before it, not after."""
        def holds_bulk(item: tuple[TopicPartition, list[Any]]) -> bool:
            tp, records = item
            offset = self.cleared.get(tp)
            return offset is not None and records[0].offset <= offset <= records[-1].offset
        return sorted(admitted.items(), key=holds_bulk)  # stable: the others keep the poll's order

    def release(self) -> None:
        """Resume each partition whose bulk may go now (call once per poll loop)."""
        if not self.waiting:  # the usual case: nothing held, nothing to ask the consumer
            return
        assigned = self.consumer.assignment()
        for tp in list(self.waiting):
            offset, required = self.waiting[tp]
            if tp not in assigned:  # revoked: whoever holds it next starts over from the store
                del self.waiting[tp]
                continue
            if self._reached(tp, required):
                del self.waiting[tp]
                self.cleared[tp] = offset
                self.consumer.resume(tp)
                log.info("bulk.released", partition=f"{tp.topic}:{tp.partition}", offset=offset)

    def _watermarks(self, tp: TopicPartition) -> dict[TopicPartition, int | None]:
        return {o: self.consumer.highwater(o) for o in self.consumer.assignment() if o != tp}

    def _reached(self, tp: TopicPartition, required: dict[TopicPartition, int | None]) -> bool:
        assigned = self.consumer.assignment()
        for other, mark in required.items():
            if other not in assigned:
                continue  # no longer ours: nothing to wait for here
            if mark is None:  # not fetched yet when the bulk came: learn it now
                mark = required[other] = self.consumer.highwater(other)
                if mark is None:
                    return False
            held = self.waiting.get(other)
            if held is not None and other != tp:
                mark = min(mark, held[0])  # held back by its own bulk: read up to that counts
            if self.consumer.position(other) < mark:
                return False
        return True
