"""The demo's bundled broker (Tansu) stays covered whatever broker the suite runs on: a pair of
halves on different partitions pairs and calls the vendor once, with what coterm sets on that
broker (no static membership, ListOffsets read on to the high watermark). `coterm demo` runs on
it end to end in tests/e2e/test_cli.py."""

from processor.dev.broker import ON_BUNDLED_BROKER, BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from tests.harness import Scenario, downgrade, seed_reference_data, upgrade


def test_a_transfer_on_the_bundled_broker_completes_with_one_vendor_call(tansu: BundledBroker, vendor: VendorSimulator,
                                                                         tmp_path: object) -> None:
    s = Scenario(tansu.bootstrap, f"{tmp_path}/store.sqlite", vendor.url)
    assert s.settings.kafka_static_membership is ON_BUNDLED_BROKER["kafka_static_membership"] is False
    assert s.settings.kafka_list_offsets == "lower-bound"
    seed_reference_data(s)
    s.process()
    s.send("transfer.upgrade_ordered", upgrade("tansu-op"), partition=2)
    s.send("transfer.downgrade_ordered", downgrade("tansu-op"), partition=0)
    s.process()
    assert [r["type"] for r in s.results_for("tansu-op")] == ["transfer.completed"]
    assert [r["key"] for r in vendor.state.requests] == ["tansu-op"]
