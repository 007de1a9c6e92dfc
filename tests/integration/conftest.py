import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from aggregates.application import Orders
from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from processor.store.opening import open_store
from tests.harness import POSTGRES_URL, Scenario


def _postgres_available() -> str | None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        return str(error).strip()
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"{tmp_path}/coterm.sqlite"
        return
    yield from postgres_store()


def postgres_store() -> Iterator[str]:
    """A store in a schema of its own on the test database, dropped afterwards; a skip (a failure
    under COTERM_REQUIRE_POSTGRES) when no PostgreSQL answers."""
    problem = _postgres_available()
    if problem:
        if os.environ.get("COTERM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (COTERM_REQUIRE_POSTGRES) but {POSTGRES_URL} failed: {problem}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def app(store: str) -> Iterator[Orders]:
    """The real Orders application on the parametrised store."""
    orders = open_store(store)
    yield orders
    orders.close()


@pytest.fixture
def scenario(broker: BundledBroker, store: str, vendor: VendorSimulator) -> Scenario:
    return Scenario(broker.bootstrap, store, vendor.url)

