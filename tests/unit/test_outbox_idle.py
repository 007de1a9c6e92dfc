"""When the outbox counts as busy (`coterm run --until-idle`, the demo's progress): from what its
round's last read of the log found, not from a query of its own each round (an idle round sent
three reads where one now goes)."""

import threading
from typing import Any

from processor.outbox.dispatch import Outbox
from tests.world import Published, World


def test_busy_until_a_read_of_the_log_reaches_its_head() -> None:
    world = World().products_and_customer()
    world.purchase("s1")
    world.downgrade("op-1")
    world.downgrade("op-2")
    box = Outbox(world.app, Published(), None, 900.0, lambda: world.now)
    assert box.busy  # nothing read yet: results may be unpublished
    assert box.follow(limit=1) == 1 and box.busy  # a whole page: more may follow
    box.follow_to_head(threading.Event())
    assert not box.busy
    world.downgrade("op-3")  # recorded since the last read: the next round reads it
    assert box.follow() == 1 and not box.busy and box.read_at == world.app.process_recorder.max_notification_id()


def test_a_round_that_decided_nothing_does_not_read_the_log_again() -> None:
    world = World().products_and_customer()
    world.purchase("s1")
    box = Outbox(world.app, Published(), None, 900.0, lambda: world.now)
    box.follow_to_head(threading.Event())
    assert box.dispatch() == 0 and not box.decided  # no vendor here: nothing to decide


class Unreachable(Published):
    def publish(self, messages: list[Any]) -> None:
        raise ConnectionError("Kafka does not answer")


def test_results_not_published_keep_it_busy() -> None:
    """A read whose results could not be published leaves them to the next round: until then the
    outbox is busy, or `--until-idle` could stop with results unpublished."""
    world = World().products_and_customer()
    world.purchase("s1")
    world.downgrade("op-1")
    world.upgrade("op-1", seats=4)  # not the seats the downgrade frees: rejected, a result to publish
    box = Outbox(world.app, Unreachable(), None, 900.0, lambda: world.now)
    read_at = box.read_at
    try:
        box.follow()
    except ConnectionError:
        pass
    assert box.busy and box.read_at == read_at  # read again by the next round
