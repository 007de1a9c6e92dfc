"""The domain's boundary (STYLE.md, Boundaries): `aggregates/` imports nothing of ours outside
itself, and its application runs on the library's own infrastructure, coterm's store arriving
by injection (`PERSISTENCE_MODULE`)."""

import ast
from pathlib import Path

from eventsourcing.popo import POPOProcessRecorder

from aggregates.application import Orders
from processor.store.factories import SQLITE
from processor.store.stored_orders import StoredOrders
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]


def test_aggregates_import_nothing_of_ours_but_aggregates() -> None:
    ours = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"aggregates"}
    assert {"contracts", "processor", "projections"} <= ours
    found = []
    for path in sorted((ROOT / "aggregates").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ours]
    assert found == [], f"the domain reaches outward: {found}"


def test_a_pair_is_decided_on_the_library_s_own_in_memory_recorder() -> None:
    app = Orders()  # no PERSISTENCE_MODULE: the library's POPO recorder, without coterm's batched lookups
    assert type(app.recorder) is POPOProcessRecorder
    world = World(app).products_and_customer()
    world.purchase("s1", seats=10, start="2026-01-05", end="2027-01-04", on="2026-01-05")
    world.downgrade("op")
    world.upgrade("op")
    transfer = world.transfer("op")
    assert transfer.status == "paired" and transfer.vendor_request is not None
    assert transfer.vendor_request["source"] == {"subscription_id": "s1", "seats_before": 10, "seats_after": 7}


def test_the_stored_application_keeps_the_store_s_names() -> None:
    # The library names an application subclass after itself, and PostgreSQL's tables and the
    # environment prefix after that name: a store written as "coterm" must stay readable.
    app = StoredOrders(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": ":memory:"})
    assert app.name == Orders.name == "coterm"
