"""Bulk migrations (CONTRACT.md section 5): first decisions, schedules per renewal window, the
business date that makes them due, joining the bulk's bundle, cancellation, reuse of a bulk_id."""

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import errors
from aggregates.bulk import bulk_request_id
from aggregates.calendar import CALENDAR_ID
from tests.world import World

BULK_DAY = "2026-11-01"


@pytest.fixture
def world() -> World:
    w = World()
    w.product("p1")
    w.product("p2")
    w.product("av", bundle=True)
    for c in ("c1", "c2", "c3"):
        w.customer(c)
    # c1: in its window now; c2: its window opens 2026-12-15; c3: p1 now, p2 on 2027-01-20
    w.purchase("s1", customer_id="c1", product_id="p1", end="2027-01-04")
    w.purchase("s2", customer_id="c2", product_id="p1", end="2027-03-15")
    w.purchase("s3", customer_id="c3", product_id="p1", billing_model="monthly")
    w.purchase("s4", customer_id="c3", product_id="p2", end="2027-04-20")
    return w


def outcomes(world: World, bulk_id: str = "b1") -> dict[tuple[str, str], tuple[str, str | None, str]]:
    bulk = world.bulk_state(bulk_id)
    return {(c, p): (o["outcome"], o["reason_code"], o["on"]) for c, ps in bulk.outcomes.items() for p, o in ps.items()}


def test_first_decisions_migrate_refuse_and_schedule(world: World) -> None:
    world.bulk("b1", ["c1", "c2", "ghost"], ["p1"], on=BULK_DAY)
    assert outcomes(world) == {
        ("c1", "p1"): ("migrated", None, BULK_DAY),
        ("c2", "p1"): ("scheduled", "NOT_IN_RENEWAL_WINDOW", "2026-12-15"),
        ("ghost", "p1"): ("rejected", "CUSTOMER_UNKNOWN", BULK_DAY),
    }
    bulk = world.bulk_state("b1")
    assert bulk.customers == ["c1", "c2", "ghost"] and bulk.status == "deciding"
    assert bulk.scheduled() == [{"customer_id": "c2", "product_id": "p1", "on": "2026-12-15"}]
    # each customer was decided as its own migration request, named by (bulk_id, customer_id)
    assert world.migration(bulk_request_id("b1", "c2")).decisions[-1]["rejected"][0]["eligible_from"] == date(2026, 12, 15)
    assert world.subscription("s1").billing_model == "usage_based"
    assert world.subscription("s2").billing_model == "annual"
    assert world.app.repository.get(CALENDAR_ID).due == {"2026-12-15": ["b1"]}


def test_a_scheduled_product_is_decided_when_the_business_date_reaches_its_day(world: World) -> None:
    world.bulk("b1", ["c1", "c2"], ["p1"], on=BULK_DAY)
    world.tick("2026-12-14")
    assert outcomes(world)[("c2", "p1")][0] == "scheduled"
    world.tick("2026-12-20")  # any later date reaches it, not only the day itself
    assert outcomes(world)[("c2", "p1")] == ("migrated", None, "2026-12-15")
    scheduled = world.migration(bulk_request_id("b1", "c2", date(2026, 12, 15)))
    assert scheduled.decisions[-1]["on"] == date(2026, 12, 15)
    assert [m["subscription_id"] for m in scheduled.decisions[-1]["migrated"]] == ["s2"]
    assert world.subscription("s2").billing_model == "usage_based"
    bulk = world.bulk_state("b1")
    assert bulk.status == "finished" and bulk.counts() == {"migrated": 2, "rejected": 0, "cancelled": 0}
    assert world.app.repository.get(CALENDAR_ID).due == {}


def test_a_scheduled_product_joins_the_bundle_the_bulk_created(world: World) -> None:
    world.bulk("b1", ["c3"], ["p1", "p2"], on=BULK_DAY)
    first = world.customer_state("c3")
    assert {b["product_id"] for b in first.bundle} == {"p1", "av"}
    world.tick("2027-01-20")
    assert outcomes(world)[("c3", "p2")] == ("migrated", None, "2027-01-20")
    joined = world.customer_state("c3")
    assert [b["product_id"] for b in joined.bundle] == ["p1", "av", "p2"]  # av is not added twice
    assert joined.migrated_by == bulk_request_id("b1", "c3")
    decision = world.migration(bulk_request_id("b1", "c3", date(2027, 1, 20))).decisions[-1]
    assert decision["rejected"] == [] and [b["product_id"] for b in decision["bundle"]] == ["p1", "av", "p2"]


def test_another_request_still_finds_the_customer_already_migrated(world: World) -> None:
    world.bulk("b1", ["c3"], ["p1"], on=BULK_DAY)
    world.bulk("b2", ["c3"], ["p2"], on="2027-01-25")
    assert outcomes(world, "b2") == {("c3", "p2"): ("rejected", "ALREADY_MIGRATED", "2027-01-25")}


def test_a_product_refused_for_another_reason_at_its_day_is_rejected_then(world: World) -> None:
    world.bulk("b1", ["c2"], ["p1"], on=BULK_DAY)
    world.update_customer("c2", data_complete=False)
    world.tick("2026-12-15")
    assert outcomes(world)[("c2", "p1")] == ("rejected", "INCOMPLETE_CUSTOMER_DATA", "2026-12-15")
    assert world.bulk_state("b1").counts() == {"migrated": 0, "rejected": 1, "cancelled": 0}


def test_a_business_date_already_past_the_day_decides_at_once(world: World) -> None:
    world.tick("2027-01-01")  # e.g. a message on another partition was applied first
    world.bulk("b1", ["c2"], ["p1"], on=BULK_DAY)
    assert outcomes(world)[("c2", "p1")] == ("migrated", None, "2026-12-15")
    assert world.bulk_state("b1").status == "finished"


def test_cancel_drops_what_is_still_scheduled(world: World) -> None:
    world.bulk("b1", ["c1", "c2"], ["p1"], on=BULK_DAY)
    world.cancel_bulk("b1", on="2026-11-10")
    bulk = world.bulk_state("b1")
    assert bulk.status == "cancelled" and bulk.due == {}
    assert bulk.counts() == {"migrated": 1, "rejected": 0, "cancelled": 1}
    world.tick("2027-02-01")
    assert world.subscription("s2").billing_model == "annual"
    assert world.app.repository.get(CALENDAR_ID).due == {}
    world.cancel_bulk("b1", on="2027-02-02")  # too late: recorded, nothing changes
    assert world.bulk_state("b1").status == "cancelled"


def test_unknown_bulk_cannot_be_cancelled(world: World) -> None:
    with pytest.raises(errors.UnknownReference):
        world.cancel_bulk("nope", on=BULK_DAY)


def test_a_bulk_id_reused_with_another_payload_is_invalid(world: World) -> None:
    world.bulk("b1", ["c1"], ["p1"], on=BULK_DAY)
    version = world.bulk_state("b1").version
    world.bulk("b1", ["c1"], ["p1"], on="2026-11-02")  # the same request again: nothing new
    assert world.bulk_state("b1").version == version
    with pytest.raises(errors.ConflictingInput, match="customer_ids"):
        world.bulk("b1", ["c1", "c2"], ["p1"], on=BULK_DAY)


def test_all_customers_of_partner_follows_the_partner_index(world: World) -> None:
    world.customer("c9", partner_id="other")
    world.update_customer("c3", partner_id="other")
    world.bulk("b1", None, ["p1"], on=BULK_DAY)
    assert world.bulk_state("b1").customers == ["c1", "c2"]
    world.bulk("b2", None, ["p1"], on=BULK_DAY, partner_id="other")
    assert world.bulk_state("b2").customers == ["c3", "c9"]  # by id: registration order depends on partitions
    world.bulk("b3", None, ["p1"], on=BULK_DAY, partner_id="nobody")
    assert world.bulk_state("b3").customers == [] and world.bulk_state("b3").status == "finished"


def test_days_are_decided_in_order_within_one_jump(world: World) -> None:
    world.purchase("s5", customer_id="c1", product_id="p2", end="2027-05-01")
    world.bulk("b1", ["c1", "c2", "c3"], ["p1", "p2"], on=BULK_DAY)
    assert [(s["customer_id"], s["product_id"], s["on"]) for s in world.bulk_state("b1").scheduled()] == [
        ("c2", "p1", "2026-12-15"), ("c3", "p2", "2027-01-20"), ("c1", "p2", "2027-01-31")]
    world.tick("2027-06-01")
    result = outcomes(world)
    assert result[("c1", "p2")] == ("migrated", None, "2027-01-31")
    assert result[("c2", "p2")][1] == "NO_SUBSCRIPTION"
    assert world.bulk_state("b1").counts() == {"migrated": 5, "rejected": 1, "cancelled": 0}


@given(ends=st.lists(st.tuples(st.integers(0, 150), st.integers(0, 150)), min_size=1, max_size=5),
       ticks=st.lists(st.integers(1, 200), max_size=6))
@settings(max_examples=40, deadline=None)
def test_coarse_ticks_reach_the_same_decisions_as_daily_ones(ends: list[tuple[int, int]], ticks: list[int]) -> None:
    """Whatever days the business date jumps to, each product is decided on its own day: the
    outcome equals that of a clock ticking every day. Nothing is left scheduled at the end."""

    def final(days: list[int]) -> dict[tuple[str, str], tuple[str, str | None, str]]:
        w = World()
        w.product("p1")
        w.product("p2")
        for i, (e1, e2) in enumerate(ends):
            w.customer(f"c{i}")
            for product, end in (("p1", e1), ("p2", e2)):
                w.purchase(f"s{i}{product}", customer_id=f"c{i}", product_id=product,
                           start="2026-01-05", end=(date(2026, 11, 1) + timedelta(days=30 + end)).isoformat())
        w.bulk("b1", [f"c{i}" for i in range(len(ends))], ["p1", "p2"], on=BULK_DAY)
        for day in days:
            w.tick((date(2026, 11, 1) + timedelta(days=day)).isoformat())
        w.tick("2027-12-31")
        assert w.bulk_state("b1").status == "finished" and w.bulk_state("b1").due == {}
        return outcomes(w)

    assert final(ticks) == final(list(range(1, 200)))  # ticks in any order: the date never runs backwards


def test_the_bulk_summary_is_recorded_after_its_customers_results(world: World) -> None:
    """bulk_accepted and bulk_finished are published after the customers' results of the same
    transaction (the outbox publishes in log order): a reader that sees the summary has the rest."""
    world.bulk("b1", ["c1", "c3"], ["p1"], on=BULK_DAY)  # everything decided at once: finished at once
    world.tick("2026-11-03")
    world.bulk("b2", ["c2"], ["p1"], on="2026-11-04")
    world.tick("2026-12-20")  # decides b2's scheduled product, then finishes it

    topics = [n.topic for n in world.app.recorder.select_notifications(start=1, limit=10_000)]

    def where(kind: str) -> list[int]:
        return [i for i, t in enumerate(topics) if t.endswith(kind)]

    accepted, finished, decided = where("Bulk.Accepted"), where("Bulk.Finished"), where("Migration.Decided")
    assert len(accepted) == len(finished) == 2 and len(decided) == 4
    # b1: its two customers, then its summary; b2: its customer, accepted, the scheduled decision, finished
    assert decided[1] < accepted[0] < finished[0] < decided[2] < accepted[1] < decided[3] < finished[1]


def test_a_bundle_first_made_by_a_scheduled_decision_gives_no_new_key_to_a_requested_product(world: World) -> None:
    # c4 holds p1 (window opens 2026-12-15) and av, a bundle product also requested (window 2027-02-01):
    # the first decision migrates nothing; p1's day creates the bundle; av joins on its own day.
    world.customer("c4")
    world.purchase("s5", customer_id="c4", product_id="p1", end="2027-03-15")
    world.purchase("s6", customer_id="c4", product_id="av", end="2027-05-02")
    world.bulk("b1", ["c4"], ["p1", "av"], on=BULK_DAY)
    assert world.customer_state("c4").bundle is None
    world.tick("2026-12-15")
    assert world.customer_state("c4").bundle == [{"product_id": "p1", "subscription_key": "KEY-s5"}]
    world.tick("2027-02-01")
    bundle = world.customer_state("c4").bundle
    assert sorted(e["product_id"] for e in bundle) == ["av", "p1"]  # one subscription per product
    assert {"product_id": "av", "subscription_key": "KEY-s6"} in bundle
    assert outcomes(world)[("c4", "av")][0] == "migrated"
