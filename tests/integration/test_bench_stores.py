"""The stores the benchmark builds in-process (`bench.replay_store`) are as a running coterm
leaves them, so the filled store's burst (`bench.pipeline --filled-events`) measures its own
transfers only, not a backlog of the fill's results or read models."""

import json

from bench import workload
from bench.replay_store import build_store
from processor.outbox.dispatch import RESULTS_TRACKING, WORK_TRACKING
from processor.store.opening import open_store
from projections.projection import Projection


def test_a_filled_store_has_nothing_left_to_do(tmp_path: object) -> None:
    store = f"{tmp_path}/filled.sqlite"
    held = build_store(store, 5_000, project=True)  # the reference data, then one round of 2,000 transfers
    app = open_store(store)
    try:
        recorder = app.process_recorder
        assert recorder.max_notification_id() == held > 5_000
        assert recorder.max_tracking_id(RESULTS_TRACKING) == held  # every result counted as published
        assert recorder.max_tracking_id(WORK_TRACKING) == held  # no vendor call waiting
        projection = Projection(app)
        assert projection.position == held
        rows = projection.tables.fetch(
            f"SELECT status, COUNT(*) AS n FROM {projection.tables.table('operations')} GROUP BY status", [])
        assert {r["status"]: r["n"] for r in rows} == {"completed": 2000}
    finally:
        app.close()


def test_two_workloads_share_no_message_id() -> None:
    """A burst published into a filled store would otherwise be taken for redeliveries."""
    def ids(tag: str) -> set[str]:
        messages = workload.reference_data(tag, 3, 2) + workload.transfers(tag, 20, 3, 2)
        return {json.loads(m.value)["message_id"] for m in messages}

    assert len(ids("a")) == 1 + 3 + 3 * 2 + 40  # the product, customers, subscriptions, two halves each
    assert not ids("a") & ids("b")
    assert ids("a") == ids("a")  # still the same workload each run
