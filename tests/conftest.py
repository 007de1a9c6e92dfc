"""Session-wide real infrastructure: a Kafka broker (bundled, or a container: `tests/backend.py`)
and a vendor simulator per test."""

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from tests import backend
from tests.harness import Scenario

BACKEND = backend.chosen()
_containers: backend.Containers | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _containers
    if BACKEND == "containers" and _containers is None:
        problem = backend.docker_problem()
        if problem:
            raise pytest.UsageError(f"COTERM_TEST_BACKEND=containers needs a Docker engine that answers: {problem}")
        _containers = backend.Containers().start()
        config.add_cleanup(_containers.stop)


def pytest_report_header(config: pytest.Config) -> str:
    return backend.header(BACKEND)


@pytest.fixture(scope="session")
def broker() -> Iterator[Any]:
    if _containers is not None:
        yield SimpleNamespace(bootstrap=_containers.bootstrap)
        return
    with BundledBroker() as running:
        yield running


@pytest.fixture
def vendor() -> Iterator[VendorSimulator]:
    sim = VendorSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def sqlite_store(tmp_path: object) -> str:
    return f"{tmp_path}/coterm.sqlite"


@pytest.fixture
def sqlite_scenario(broker: Any, sqlite_store: str, vendor: VendorSimulator) -> Scenario:
    """A world of its own (topics, group, SQLite store) on the session's broker."""
    return Scenario(broker.bootstrap, sqlite_store, vendor.url)
