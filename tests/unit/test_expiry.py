"""The pairing-timeout rule (CONTRACT.md section 3, `PAIRING_TIMEOUT`, 1.2): a half expires only
once the store has applied every partition of the orders topic up to offsets Kafka had reached
after the half's deadline. The outbox measures both sides itself; here they are given."""

from datetime import datetime, timedelta

import pytest

from processor.outbox.dispatch import Outbox
from processor.outbox.topic_ends import Ends
from tests.world import Published, World, new_target

TIMEOUT_S = 900.0


class Kafka:
    """The two measurements: the topic's ends (taken when asked) and the store's positions."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.now = world.now
        self.ends = {0: 10, 1: 7, 2: 3}
        self.positions = {0: 10, 1: 7, 2: 3}
        self.measured: list[datetime] = []

    def clock(self) -> datetime:
        return self.now

    def measure(self) -> Ends:
        self.measured.append(self.now)
        return Ends(self.now.timestamp(), dict(self.ends))

    def applied(self, partitions: list[int]) -> dict[int, int]:
        return {p: self.positions.get(p, 0) for p in partitions}


def waiting(world: World, op: str) -> tuple[Kafka, Outbox]:
    """A downgrade half of `op` waiting for its pair, and an outbox that has read it."""
    world.downgrade(op)
    kafka = Kafka(world)
    box = Outbox(world.app, Published(), None, TIMEOUT_S, kafka.clock, topic_ends=kafka.measure,
                 store_positions=kafka.applied)
    box.follow()
    return kafka, box


@pytest.fixture
def world() -> World:
    w = World().products_and_customer()
    w.purchase("s1")
    return w


def test_a_half_expires_once_the_store_applied_what_kafka_held_after_its_deadline(world: World) -> None:
    kafka, box = waiting(world, "op")
    kafka.now = world.now + timedelta(seconds=TIMEOUT_S - 1)
    assert box.expire() == 0 and kafka.measured == []  # before the deadline nothing is even measured
    kafka.now = world.now + timedelta(seconds=TIMEOUT_S + 1)
    kafka.ends = {0: 10, 1: 9, 2: 3}  # partition 1 holds two messages the store has not applied
    assert box.expire() == 0
    assert world.transfer("op").status == "waiting_for_pair"
    kafka.now += timedelta(seconds=1)
    kafka.positions = {0: 10, 1: 9, 2: 3}  # applied now (say, by another processor): nothing was the partner
    assert box.expire() == 1
    assert world.transfer("op").status == "expired"


def test_a_partner_in_kafka_before_the_deadline_is_paired_not_expired(world: World) -> None:
    kafka, box = waiting(world, "op")
    # Past the deadline the partner waits, unapplied, on a partition a paused processor holds.
    kafka.now = world.now + timedelta(seconds=TIMEOUT_S + 30)
    kafka.ends = {0: 10, 1: 8, 2: 3}
    for _ in range(5):  # checked every second: the store is behind, so nothing expires
        assert box.expire() == 0
        kafka.now += timedelta(seconds=1)
    world.upgrade("op", target=new_target("s-new"))  # the partition moves; its new holder applies it
    kafka.positions = {0: 10, 1: 8, 2: 3}
    box.follow()
    assert box.expire() == 0
    assert world.transfer("op").status == "paired"


def test_ends_measured_before_a_later_half_deadline_do_not_expire_it(world: World) -> None:
    kafka, box = waiting(world, "early")
    later = world.now + timedelta(seconds=60)
    world.now = later
    world.downgrade("late", order_id="late-down")
    box.follow()
    kafka.now = later + timedelta(seconds=TIMEOUT_S - 30)  # early is due, late is not
    kafka.ends = {0: 10, 1: 7, 2: 4}
    kafka.positions = {0: 10, 1: 7, 2: 4}
    assert box.expire() == 1
    assert world.transfer("early").status == "expired" and world.transfer("late").status == "waiting_for_pair"
    kafka.now = later + timedelta(seconds=TIMEOUT_S + 1)
    assert box.expire() == 1
    assert world.transfer("late").status == "expired"
