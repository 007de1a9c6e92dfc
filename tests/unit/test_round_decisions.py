"""An outbox round's transactions: a chunk that keeps conflicting is split, and each answer is
recorded once."""

from typing import Any

from aggregates.application import KeptConflicting, _project
from aggregates.subscription import Subscription
from processor.outbox.round_decisions import decide_round
from processor.outbox.vendor_client import VendorOutcome
from tests.world import World


class Contended:
    """The store, where another writer wins both attempts of the first transaction: its change
    is computed on the real store each time and thrown away, as a conflicting commit's is."""

    def __init__(self, app: Any) -> None:
        self.app, self.attempts, self.lost = app, [], False

    def decide(self, change: Any, attempts: int, fence: Any) -> Any:
        self.attempts.append(attempts)
        if not self.lost:
            self.lost = True
            for _ in range(attempts):
                uow = self.app.unit_of_work()
                change(uow)
                uow.discard()  # what a failed commit does: what it changed leaves the cache
            raise KeptConflicting("another writer won")
        return self.app.decide(change, attempts=attempts, fence=fence)


def test_a_chunk_that_keeps_conflicting_is_split_and_every_answer_recorded_once() -> None:
    ops = [f"op{n}" for n in range(4)]
    world = World().requested(*ops, seats=1)
    contended = Contended(world.app)
    answers = {op: VendorOutcome(True, 1, 10, vendor_reference=f"V-{op}") for op in ops}
    decide_round(contended, None, answers, [], [])  # type: ignore[arg-type]
    assert contended.attempts == [2, 2, 2]  # the four lost twice, then two and two
    assert [world.transfer(op).status for op in ops] == ["completed"] * 4
    assert world.subscription("s1").seats == 6  # each answer moved its seat once
    stored = _project(None, [world.app.mapper.to_domain_event(e)
                             for e in world.app.recorder.select_events(Subscription.create_id("s1"))])
    assert stored.seats == 6 and stored.version == world.subscription("s1").version
