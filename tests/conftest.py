"""Session-wide real infrastructure: the bundled broker and a vendor simulator per test."""

from collections.abc import Iterator

import pytest

from processor.broker import BundledBroker
from processor.vendor_sim import VendorSimulator


@pytest.fixture(scope="session")
def broker() -> Iterator[BundledBroker]:
    with BundledBroker() as running:
        yield running


@pytest.fixture
def vendor() -> Iterator[VendorSimulator]:
    sim = VendorSimulator().start()
    yield sim
    sim.stop()
