"""The bulk barrier's rule, on a stand-in for the consumer's positions (the Kafka path is
`tests/integration/test_bulk_migration.py`): a bulk waits until the other partitions are read
as far as they had been written, and two bulks never wait for each other."""

from collections import namedtuple

from kafka import TopicPartition

from processor.consume.bulk_barrier import BulkBarrier

Record = namedtuple("Record", "offset value")
P0, P1, P2 = (TopicPartition("orders", p) for p in range(3))
BULK = b'{"type": "migration.bulk_requested"}'
OTHER = b'{"type": "customer.registered"}'


class Positions:
    """What the barrier asks of a KafkaConsumer: assignment, positions, high watermarks, pause."""

    def __init__(self, highwater: dict[TopicPartition, int | None]) -> None:
        self.high = dict(highwater)
        self.at = {tp: 0 for tp in highwater}
        self.paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.high)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high[tp]

    def position(self, tp: TopicPartition) -> int:
        return self.at[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[tp] = offset

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)


def test_a_bulk_waits_until_the_other_partitions_are_read_as_far_as_they_were_written() -> None:
    kafka = Positions({P0: 3, P1: 10, P2: None})
    barrier = BulkBarrier(kafka)
    batch = [Record(0, OTHER), Record(1, BULK), Record(2, OTHER)]
    assert barrier.admit(P0, batch) == batch[:1]  # what came before the bulk goes on
    assert P0 in kafka.paused and kafka.position(P0) == 1  # rewound to the bulk
    kafka.at[P1] = 10
    barrier.release()
    assert P0 in kafka.paused  # P2's watermark is not known yet: wait
    kafka.high[P2] = 4
    kafka.at[P2] = 3
    barrier.release()
    assert P0 in kafka.paused
    kafka.at[P2] = 4
    barrier.release()
    assert P0 not in kafka.paused
    assert barrier.admit(P0, batch[1:]) == batch[1:]  # released: the bulk is applied, once


def test_two_bulks_do_not_wait_for_each_other() -> None:
    kafka = Positions({P0: 5, P1: 5})
    barrier = BulkBarrier(kafka)
    assert barrier.admit(P0, [Record(2, BULK)]) == []  # P1 is read up to 0 of 5
    kafka.at[P1] = 3
    # P1's own bulk: P0 is held back at its bulk (2), and read up to there counts
    assert barrier.admit(P1, [Record(3, BULK)]) == [Record(3, BULK)]
    kafka.at[P1] = 5
    barrier.release()
    assert not kafka.paused  # P0's bulk goes once P1 is read as far as it was written


def test_a_bulk_with_nothing_else_to_read_goes_at_once() -> None:
    kafka = Positions({P0: 2, P1: 7})
    kafka.at[P1] = 7
    barrier = BulkBarrier(kafka)
    batch = [Record(0, OTHER), Record(1, BULK)]
    assert barrier.admit(P0, batch) == batch and not kafka.paused


def test_a_bulk_let_through_is_applied_after_what_the_same_poll_read_of_the_other_partitions() -> None:
    # The registrations on P1 and the bulk on P0 came in one poll: P1 is read as far as it was
    # written, so the bulk goes, but only once P1's records are in (else CUSTOMER_UNKNOWN).
    kafka = Positions({P0: 2, P1: 7, P2: 3})
    kafka.at[P1], kafka.at[P2] = 7, 3
    barrier = BulkBarrier(kafka)
    polled = {P0: [Record(0, OTHER), Record(1, BULK)], P1: [Record(5, OTHER), Record(6, OTHER)], P2: [Record(2, OTHER)]}
    admitted = {tp: barrier.admit(tp, records) for tp, records in polled.items()}
    assert admitted == polled and not kafka.paused
    assert [tp for tp, _ in barrier.in_order(admitted)] == [P1, P2, P0]
    # a poll that holds no bulk keeps its order
    later = {P0: [Record(2, OTHER)], P1: [Record(7, OTHER)]}
    assert [tp for tp, _ in barrier.in_order(later)] == [P0, P1]
