"""`coterm publish`: a file is checked against the contract line by line before anything is produced;
and docs/contract.md documents every message type the JSON Schemas describe."""

import json
from pathlib import Path

from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from processor.kafka_io import read_topic
from tests.e2e.test_cli import coterm
from tests.harness import Scenario, downgrade, envelope, seed_reference_data, upgrade

ROOT = Path(__file__).resolve().parents[2]


def test_publish_refuses_a_file_with_a_bad_line_then_skips_it_when_asked(broker: BundledBroker, vendor: VendorSimulator,
                                                                         tmp_path: Path) -> None:
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    seed_reference_data(s)
    lines = [json.dumps(envelope("transfer.downgrade_ordered", downgrade("pub-1"))),
             "",
             json.dumps(envelope("transfer.upgrade_ordered", upgrade("pub-1"))),
             json.dumps(envelope("transfer.upgrade_ordered", {**upgrade("pub-2"), "seats": 0}))]
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n")
    before = len(read_topic(s.bootstrap, s.settings.topic_orders))

    refused = coterm("publish", str(path), env=s.env())
    assert refused.returncode == 1 and "line 4: INVALID_PAYLOAD" in refused.stderr and "nothing published" in refused.stderr
    assert len(read_topic(s.bootstrap, s.settings.topic_orders)) == before
    checked = coterm("publish", str(path), "--dry-run", "--skip-invalid", env=s.env())
    assert checked.returncode == 1 and "2 valid message(s), 1 invalid" in checked.stdout

    done = coterm("publish", str(path), "--skip-invalid", env=s.env())
    assert done.returncode == 0 and "published 2 message(s)" in done.stdout and "skipped line 4" in done.stdout
    s.process()
    [result] = s.results_for("pub-1")
    assert result["type"] == "transfer.completed"
    assert coterm("publish", str(tmp_path / "missing.jsonl"), env=s.env()).returncode == 2


def test_the_contract_document_covers_every_schema() -> None:
    doc = (ROOT / "docs" / "contract.md").read_text()
    for schema in sorted((ROOT / "contracts" / "schemas").glob("*.json")):
        assert f"contracts/schemas/{schema.name}" in doc, f"docs/contract.md does not link {schema.name}"
        kind, _, name = schema.stem.partition(".")
        if kind in ("inbound", "result"):
            assert f"`{name}`" in doc, f"docs/contract.md does not document the type {name}"
    for link in __import__("re").findall(r"\]\((\.\./[^)]+)\)", doc):
        assert (ROOT / "docs" / link).resolve().exists(), link
