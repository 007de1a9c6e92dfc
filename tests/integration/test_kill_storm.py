"""A small kill storm in `make test` (the full one is `make storm`): 3 `coterm run` processes on
PostgreSQL, 6 partitions, 300 transfers, 50 migrations and a bulk migration of 25 customers
(21 business days of ticks) flowing while processors are SIGKILLed and restarted, twice of
them the one whose outbox leads. See `tests/storm.py`."""

import os

import pytest

from tests.integration.conftest import _postgres_available
from tests.storm import run_storm


def test_a_small_kill_storm_loses_nothing_and_calls_the_vendor_once_per_completed_transfer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    problem = _postgres_available()
    if problem:
        if os.environ.get("COTERM_REQUIRE_POSTGRES"):
            pytest.fail(f"the kill storm needs PostgreSQL (COTERM_REQUIRE_POSTGRES): {problem}")
        pytest.skip(f"the kill storm needs PostgreSQL: {problem}")
    report = run_storm(transfers=300, migrations=50, kills=8, log_dir=str(tmp_path), say=lambda _: None)
    print(report.table())
    assert report.kills == 8 and report.leader_kills >= 1  # the leader was found and killed
    assert report.lost == [] and report.contradictions == [] and report.wrong_outcomes == []
    assert report.vendor_problems == [] and report.seat_problems == [] and report.dead_letters == 0
    assert 0 < report.vendor_accepted < 300  # the completing share of the mix, each called once
