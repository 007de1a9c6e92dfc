"""A small storm in `make test` (the full one is `make storm`): 3 `coterm run` processes on
PostgreSQL, 6 partitions, 300 transfers (halves on different partitions, orphans, many at once
from one source and into one existing target, a slow vendor), 50 migrations and a bulk migration
of 25 customers (21 business days of ticks) flowing while processors are SIGKILLed and
restarted (twice the one whose outbox leads), two are paused past the session and pairing
timeouts (one of them the leader) and the database stops answering for 8 s. See `tests/storm.py`."""

import os

import pytest

from tests.backend import postgres_problem
from tests.storm import run_storm


@pytest.mark.storm
def test_a_small_kill_storm_loses_nothing_and_calls_the_vendor_once_per_completed_transfer(tmp_path, broker) -> None:  # type: ignore[no-untyped-def]
    problem = postgres_problem()
    if problem:
        if os.environ.get("COTERM_REQUIRE_POSTGRES"):
            pytest.fail(f"the kill storm needs PostgreSQL (COTERM_REQUIRE_POSTGRES): {problem}")
        pytest.skip(f"the kill storm needs PostgreSQL: {problem}")
    report = run_storm(transfers=300, migrations=50, kills=8, log_dir=str(tmp_path), say=print,
                       pauses=2, pause_s=10.0, outage_s=8.0, bootstrap=broker.bootstrap, bundled=broker.kind == "tansu")
    print(report.table())
    assert report.kills == 8 and report.leader_kills >= 1  # the leader was found and killed
    assert report.pauses == 2 and report.leader_pauses == 1  # ... and paused
    assert report.lost == [] and report.contradictions == [] and report.wrong_outcomes == []
    assert report.false_expiries == [] and report.orphans > 0  # orphans expired (planned outcome), nothing else
    assert report.vendor_problems == [] and report.seat_problems == [] and report.dead_letters == 0
    assert report.chain_problems == [] and report.overlaps == [] and report.fencing_problems == []
    assert report.calls_during_leader_pause and min(report.calls_during_leader_pause) > 0  # another took over
    assert 0 < report.vendor_accepted < 300  # the completing share of the mix, each called once
