"""A small builder over the real domain (in-memory store) for unit and property tests."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from itertools import count
from typing import Any

from aggregates import bulk_commands, commands, transfer_commands
from aggregates.application import Orders
from aggregates.bulk import Bulk
from aggregates.customer import Customer
from aggregates.migration import Migration
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer
from processor.store.factories import MEMORY
from processor.store.stored_orders import StoredOrders

_ids = count(1)


def at(day: str, time: str = "10:00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}+00:00")


class World:
    def __init__(self, app: Orders | None = None) -> None:
        self.app = app or StoredOrders(env={"PERSISTENCE_MODULE": MEMORY})
        self.now = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
        self._batch: Any = None

    @contextmanager
    def one_batch(self) -> Iterator[None]:
        """The commands inside share one unit of work, committed at the end, as the inbox applies
        the records of one poll."""
        self._batch = self.app.unit_of_work()
        try:
            yield
        finally:
            uow, self._batch = self._batch, None
        self.app.commit(uow)

    def _run(self, day: str, handler: Any, *args: Any, **kwargs: Any) -> Any:
        uow = self._batch or self.app.unit_of_work()
        ctx = commands.Context(f"msg-{next(_ids)}", at(day), self.now)
        result = handler(uow, ctx, *args, **kwargs)
        bulk_commands.reach_date(uow, ctx)  # as the processor does after every applied message
        if self._batch is None:
            self.app.commit(uow)
        return result

    def products_and_customer(self) -> "World":
        """Products p1 and p2 and customer c1: what most transfer tests start from."""
        self.product("p1")
        self.product("p2")
        self.customer()
        return self

    def requested(self, *ops: str, seats: int) -> "World":
        """`products_and_customer`, s1 of 10 seats, and each of `ops` moving `seats` out of it
        into a new subscription, both halves received: its vendor call requested."""
        self.products_and_customer()
        self.purchase("s1", seats=10)
        for op in ops:
            self.downgrade(op, seats=seats)
            self.upgrade(op, seats=seats)
        return self

    def product(self, product_id: str, supports: bool = True, bundle: bool = False) -> None:
        self._run("2026-01-01", commands.define_product, product_id, product_id.upper(), supports, bundle)

    def customer(self, customer_id: str = "c1", channel: str = "direct", distributor_id: str | None = None,
                 data_complete: bool = True, partner_id: str = "p1") -> None:
        self._run("2026-01-01", commands.register_customer, customer_id, partner_id=partner_id, name="Acme",
                  channel=channel, distributor_id=distributor_id, data_complete=data_complete)

    def update_customer(self, customer_id: str, **changes: Any) -> None:
        self._run("2026-01-02", commands.update_customer, customer_id, changes)

    def purchase(self, subscription_id: str, customer_id: str = "c1", product_id: str = "p1", *,
                 billing_model: str = "annual", management: str = "partner_managed", seats: int = 10,
                 term_months: int = 12, start: str = "2026-01-05", end: str = "2027-01-04",
                 resource_count: int = 1, on: str | None = None) -> None:
        self._run(on or start, commands.purchase_subscription, subscription_id, customer_id, product_id=product_id,
                  plan_id=f"plan-{product_id}", billing_model=billing_model, management=management, seats=seats,
                  term_months=term_months, start_date=date.fromisoformat(start), end_date=date.fromisoformat(end),
                  subscription_key=f"KEY-{subscription_id}", resource_count=resource_count)

    def resize(self, subscription_id: str, seats: int, on: str) -> None:
        self._run(on, commands.resize_subscription, subscription_id, seats)

    def migrate(self, product_ids: list[str], on: str, customer_id: str = "c1", request_id: str = "r1") -> Migration:
        return self._run(on, commands.request_migration, request_id, customer_id, product_ids, "partner@x")

    def downgrade(self, op: str, subscription_id: str = "s1", seats: int = 3, on: str = "2026-11-01",
                  customer_id: str = "c1", order_id: str | None = None) -> Transfer:
        half = {"operation_id": op, "order_id": order_id or f"{op}-down", "customer_id": customer_id,
                "subscription_id": subscription_id, "seats": seats, "requested_by": "ops"}
        return self._run(on, transfer_commands.add_half, "downgrade", half)

    def upgrade(self, op: str, target: dict[str, Any] | None = None, seats: int = 3, on: str = "2026-11-01",
                customer_id: str = "c1", order_id: str | None = None) -> Transfer:
        target = target or new_target("s-new")
        half = {"operation_id": op, "order_id": order_id or f"{op}-up", "customer_id": customer_id,
                "seats": seats, "requested_by": "ops", "target": target}
        return self._run(on, transfer_commands.add_half, "upgrade", half)

    def cancel(self, op: str, on: str = "2026-11-01") -> Transfer:
        return self._run(on, transfer_commands.cancel_transfer, op, "ops", "customer changed mind")

    def vendor_ok(self, op: str) -> bool:
        uow = self.app.unit_of_work()
        done = transfer_commands.record_vendor_success(uow, op, f"V-{op}", 1, 10)
        self.app.commit(uow)
        return done

    def vendor_failed(self, op: str, retryable: bool) -> bool:
        uow = self.app.unit_of_work()
        code = "VENDOR_UNAVAILABLE" if retryable else "VENDOR_REJECTED"
        done = transfer_commands.record_vendor_failure(uow, op, code, "boom", retryable, 8)
        self.app.commit(uow)
        return done

    def bulk(self, bulk_id: str, customer_ids: list[str] | None, product_ids: list[str], on: str,
             partner_id: str = "p1", requested_by: str = "partner@x") -> Bulk:
        request = {"partner_id": partner_id, "requested_by": requested_by, "product_ids": product_ids,
                   "customer_ids": customer_ids, "all_customers_of_partner": customer_ids is None}
        return self._run(on, bulk_commands.request_bulk, bulk_id, request)

    def cancel_bulk(self, bulk_id: str, on: str) -> Bulk:
        return self._run(on, bulk_commands.cancel_bulk, bulk_id, "partner@x", "changed plans")

    def tick(self, day: str) -> None:
        self._run(day, lambda uow, ctx: None)

    def bulk_state(self, bulk_id: str) -> Bulk:
        return self.app.repository.get(Bulk.create_id(bulk_id))

    def migration(self, request_id: str) -> Migration:
        return self.app.repository.get(Migration.create_id(request_id))

    def transfer(self, op: str) -> Transfer:
        return self.app.repository.get(Transfer.create_id(op))

    def subscription(self, subscription_id: str) -> Subscription:
        return self.app.repository.get(Subscription.create_id(subscription_id))

    def customer_state(self, customer_id: str = "c1") -> Customer:
        return self.app.repository.get(Customer.create_id(customer_id))


def new_target(subscription_id: str, term_months: int = 12) -> dict[str, Any]:
    return {"kind": "new_subscription", "new_subscription_id": subscription_id, "product_id": "p2",
            "plan_id": "plan-p2", "term_months": term_months}


def existing_target(subscription_id: str) -> dict[str, Any]:
    return {"kind": "existing_subscription", "subscription_id": subscription_id}


class Published:
    """Where an outbox built over a `World` sends its results: nowhere (tests read the store)."""

    def publish(self, messages: list[Any]) -> None:
        pass
