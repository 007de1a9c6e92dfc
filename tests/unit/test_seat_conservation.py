"""Property: transfers conserve a customer's seats and never leave a subscription below one seat."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.world import World, existing_target, new_target

SUBS = ["s0", "s1", "s2"]

purchase = st.tuples(st.just("purchase"), st.integers(1, 30))
# Seat counts mostly small enough to pass INSUFFICIENT_SEATS, sometimes not.
resize = st.tuples(st.just("resize"), st.sampled_from(SUBS), st.integers(1, 30))
transfer = st.tuples(
    st.just("transfer"), st.sampled_from(SUBS), st.integers(1, 6) | st.integers(1, 35), st.integers(0, 3),
    st.sampled_from(["ok", "rejected", "unavailable"]), st.booleans(),
)
steps = st.lists(st.one_of(purchase, resize, transfer), min_size=1, max_size=25)


def total_seats(world: World) -> int:
    return sum(world.subscription(s).seats for s in world.customer_state().subscription_ids)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_transfers_conserve_seats(program: list[tuple]) -> None:
    world = World()
    world.product("p1")
    world.product("p2")
    world.customer()
    expected = 0
    bought = 0
    for n, step in enumerate(program):
        day = f"2026-03-{n + 2:02d}"
        if step[0] == "purchase" and bought < len(SUBS):
            world.purchase(SUBS[bought], seats=step[1], start="2026-01-05", end="2027-01-04", on="2026-01-05")
            bought += 1
            expected += step[1]
        elif step[0] == "resize" and step[1] in SUBS[:bought]:
            expected += step[2] - world.subscription(step[1]).seats
            world.resize(step[1], step[2], on=day)
        elif step[0] == "transfer" and step[1] in SUBS[:bought]:
            _, source, seats, target_pick, vendor, reversed_halves = step
            op = f"op{n}"
            owned = world.customer_state().subscription_ids
            target = existing_target(owned[target_pick % len(owned)]) if target_pick else new_target(f"new{n}")
            halves = [lambda: world.downgrade(op, subscription_id=source, seats=seats, on=day),
                      lambda: world.upgrade(op, target=target, seats=seats, on=day)]
            for half in reversed(halves) if reversed_halves else halves:
                half()
            if world.transfer(op).status == "paired":
                if vendor == "ok":
                    world.vendor_ok(op)
                    world.vendor_ok(op)  # a repeated outcome must not move seats twice
                else:
                    world.vendor_failed(op, retryable=vendor == "unavailable")
        assert total_seats(world) == expected
        assert all(world.subscription(s).seats >= 1 for s in world.customer_state().subscription_ids)
