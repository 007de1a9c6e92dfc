import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from aggregates.application import Orders
from processor.dev.vendor_sim import VendorSimulator
from processor.store.opening import open_store
from tests.backend import postgres_url
from tests.harness import Scenario


def _postgres_available() -> str | None:
    try:
        psycopg.connect(postgres_url(), connect_timeout=3).close()
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
    url = postgres_url()
    if problem:
        if os.environ.get("COTERM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (COTERM_REQUIRE_POSTGRES) but {url} failed: {problem}")
        pytest.skip(f"no PostgreSQL at {url}: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{url}?schema={schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def app(store: str) -> Iterator[Orders]:
    """The real Orders application on the parametrised store."""
    orders = open_store(store)
    yield orders
    orders.close()


@pytest.fixture
def scenario(broker: Any, store: str, vendor: VendorSimulator) -> Scenario:
    return Scenario(broker.bootstrap, store, vendor.url)

