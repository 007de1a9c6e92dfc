from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregates.application import Orders
from processor.dev.vendor_sim import VendorSimulator
from processor.store.opening import open_store
from projections.staff import Staff
from tests.backend import postgres_store
from tests.harness import Scenario
from tests.staff_users import admin_and_support


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"{tmp_path}/coterm.sqlite"
        return
    yield from postgres_store()


@pytest.fixture
def app(store: str) -> Iterator[Orders]:
    """The real Orders application on the parametrised store."""
    orders = open_store(store)
    yield orders
    orders.close()


@pytest.fixture
def scenario(broker: Any, store: str, vendor: VendorSimulator) -> Scenario:
    return Scenario(broker.bootstrap, store, vendor.url)



@pytest.fixture
def staff(tmp_path: Path) -> Staff:
    """alice (every privilege) and bob (reads only): `tests/staff_users.py`."""
    return admin_and_support(tmp_path)
