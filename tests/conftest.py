"""Session-wide real infrastructure: a Kafka broker (`tests/backend.py` says which) and a vendor
simulator per test.

The broker is started once, by pytest's controlling process, and its address handed to every
xdist worker; only Tansu, which keeps its data in the memory of the process that runs it, is
started by each process that uses it."""

import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from tests import backend
from tests.harness import TANSU_BOOTSTRAPS, Scenario

SESSION: backend.Session | None = None


def pytest_configure(config: pytest.Config) -> None:
    global SESSION
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        SESSION = backend.from_worker(worker_input["coterm_session"])
    else:
        started = backend.Started()
        try:
            SESSION = started.start()
        except (SystemExit, RuntimeError) as why:
            started.stop()
            raise pytest.UsageError(str(why)) from None
        config.add_cleanup(started.stop)
    if SESSION.postgres:
        os.environ["COTERM_TEST_POSTGRES"] = SESSION.postgres


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent when xdist is not loaded
def pytest_configure_node(node: Any) -> None:
    assert SESSION is not None
    node.workerinput["coterm_session"] = backend.to_worker(SESSION)


def pytest_report_header(config: pytest.Config) -> str:
    assert SESSION is not None
    return backend.header(SESSION)


@pytest.fixture(scope="session")
def broker() -> Iterator[Any]:
    """The suite's broker: Apache Kafka in CI. Tests take `broker.bootstrap` and nothing else."""
    assert SESSION is not None
    if SESSION.bootstrap:
        yield SimpleNamespace(bootstrap=SESSION.bootstrap, kind=SESSION.kind, ours=SESSION.ours)
        return
    with BundledBroker() as running:
        running.kind, running.ours = "tansu", True  # type: ignore[attr-defined]
        TANSU_BOOTSTRAPS.add(running.bootstrap)
        yield running


@pytest.fixture(scope="session")
def tansu() -> Iterator[BundledBroker]:
    """The demo's bundled broker, for the few tests that keep it covered whatever the suite runs on."""
    with BundledBroker() as running:
        TANSU_BOOTSTRAPS.add(running.bootstrap)
        yield running


@pytest.fixture(scope="session")
def keycloak_server() -> Iterator[Any]:
    """Keycloak from Maven Central, started once for the session's `keycloak` tests (each makes a realm)."""
    from tests import keycloak

    with keycloak.running() as server:
        yield server


@pytest.fixture
def postgres_schema_store() -> Iterator[str]:
    """A PostgreSQL store in a schema of its own, dropped afterwards (`backend.postgres_store`)."""
    yield from backend.postgres_store()


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The storm first, where it shares a session with the Keycloak tests (`tests/run_suite.py`):
    its faults run at their own pace, and Keycloak's start would crowd the two cores during them."""
    items.sort(key=lambda item: item.get_closest_marker("storm") is None)
