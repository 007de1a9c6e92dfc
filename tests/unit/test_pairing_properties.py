"""Property: whatever order the halves, duplicates and cancels arrive in, and however they fall
into batches, each operation requests at most one vendor call and reaches at most one final
outcome."""

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.transfer import Transfer
from tests.world import World

FINAL = {"Rejected", "Expired", "Completed", "Cancelled"}


def message_kinds() -> st.SearchStrategy[list[str]]:
    extras = st.lists(st.sampled_from(["down-again", "down-other", "up-other", "cancel"]), max_size=3)
    return extras.map(lambda more: ["down", "up", *more])


@settings(max_examples=80, deadline=None)
@given(st.lists(message_kinds(), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_at_most_one_call_and_one_outcome(operations: list[list[str]], rnd) -> None:  # type: ignore[no-untyped-def]
    world = World()
    world.product("p1")
    world.product("p2")
    world.customer()
    world.purchase("s1", seats=50)
    messages = [(f"op{n}", kind) for n, kinds in enumerate(operations) for kind in kinds]
    rnd.shuffle(messages)
    while messages:  # in batches of 1-4 messages, each one unit of work as the inbox applies a poll
        batch = messages[: rnd.randint(1, 4)]
        messages = messages[len(batch) :]
        with world.one_batch():
            for op, kind in batch:
                _apply(world, op, kind)
    for n, kinds in enumerate(operations):
        op = f"op{n}"
        events = list(world.app.events.get(Transfer.create_id(op)))
        names = [type(e).__name__ for e in events]
        # A call is requested by its own event, or by the `Opened` of a batch holding both halves.
        calls = names.count("VendorCallRequested") + sum(isinstance(e, Transfer.Opened) and e.call is not None
                                                         for e in events)
        assert calls <= 1, names
        assert sum(names.count(f) for f in FINAL) <= 1, names
        transfer = world.transfer(op)
        if transfer.status == "paired":
            assert transfer.vendor_request["seats"] == transfer.halves["downgrade"].seats
        if "cancel" not in kinds:
            # Without a cancel both halves always arrive, so the operation is decided.
            assert transfer.status in ("paired", "rejected"), names


def _apply(world: World, op: str, kind: str) -> None:
    if kind in ("down", "down-again"):
        world.downgrade(op, seats=1)
    elif kind == "down-other":
        world.downgrade(op, seats=2, order_id=f"{op}-other-down")
    elif kind == "up":
        world.upgrade(op, seats=1)
    elif kind == "up-other":
        world.upgrade(op, seats=2, order_id=f"{op}-other-up")
    else:
        world.cancel(op)
