"""`bench.hot_path` carries every transfer of its rounds through: its figures are of finished work."""

import re
import subprocess
import sys

from bench.hot_path import Pipeline
from bench import workload


def test_every_transfer_of_a_round_completes(tmp_path: object) -> None:
    pipeline = Pipeline(f"{tmp_path}/hot.sqlite")
    try:
        pipeline.consume(workload.reference_data("t", 3, 2))
        pipeline.consume(workload.transfers("t", 40, 3, 2))
        pipeline.carry_out()
        pipeline.project()
        rows = pipeline.projection.tables.fetch(
            f"SELECT status, COUNT(*) AS n FROM {pipeline.projection.tables.table('operations')} GROUP BY status", [])
        assert {r["status"]: r["n"] for r in rows} == {"completed": 40}
        assert pipeline.published.count == 40  # a result for each
    finally:
        pipeline.close()


def test_the_bench_prints_its_figures() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.hot_path", "--transfers", "30", "--customers", "3",
                          "--repeat", "1", "--prefill", "2000"], capture_output=True, text=True, check=True, timeout=300).stdout
    assert re.search(r"\| total CPU us/transfer \| [\d,.]+ \| [\d,.]+ \| [\d.]+ \|", out)
    # Opened (both halves in one poll: with the second half and the vendor call), Completed; TransferHeld,
    # SeatsTransferredOut; the new subscription; Customer.SubscriptionAdded
    assert re.search(r"\| events/transfer \| 6\.0 \| 6\.0 \| [\d.]+ \|", out), out
