"""Drive the real domain against a real store to put operations in every state (no Kafka needed)."""

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

from aggregates import commands, transfer_commands
from aggregates.application import Orders

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def _ctx(day: str = "2026-11-02") -> commands.Context:
    return commands.Context(str(uuid.uuid4()), datetime.fromisoformat(f"{day}T10:00:00+00:00"), NOW)


def run(app: Orders, handler: Any, *args: Any, day: str = "2026-11-02", **kwargs: Any) -> Any:
    uow = app.unit_of_work()
    result = handler(uow, _ctx(day), *args, **kwargs)
    app.commit(uow)
    return result


def vendor(app: Orders, handler: Any, *args: Any) -> None:
    uow = app.unit_of_work()
    handler(uow, *args)
    app.commit(uow)


def customer_with_subscriptions(app: Orders, customer: str = "c1", seats: int = 100) -> None:
    run(app, commands.define_product, "p1", "Elements EPP", True, True)
    run(app, commands.define_product, "nce", "M365 E3", False, False)
    run(app, commands.register_customer, customer, partner_id="p", name=f"Customer {customer}", channel="direct",
        distributor_id=None, data_complete=True)
    for sub, product, end in ((f"{customer}-s1", "nce", "2027-01-04"), (f"{customer}-epp", "p1", "2027-06-30")):
        run(app, commands.purchase_subscription, sub, customer, product_id=product, plan_id=f"plan-{product}",
            billing_model="annual", management="partner_managed", seats=seats, term_months=12,
            start_date=date(2026, 1, 5), end_date=date.fromisoformat(end), subscription_key=f"KEY-{sub}",
            resource_count=1, day="2026-01-05")


def half(app: Orders, side: str, op: str, customer: str = "c1", seats: int = 1, day: str = "2026-11-02") -> None:
    payload: dict[str, Any] = {"operation_id": op, "order_id": f"{op}-{side}", "customer_id": customer, "seats": seats,
                               "requested_by": "ops"}
    if side == "downgrade":
        payload["subscription_id"] = f"{customer}-s1"
    else:
        payload["target"] = {"kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": "nce",
                             "plan_id": "plan-e5", "term_months": 12}
    run(app, transfer_commands.add_half, side, payload, day=day)


def operation(app: Orders, op: str, outcome: str, customer: str = "c1") -> None:
    """outcome: completed | rejected | parked | vendor_rejected | waiting | expired | cancelled"""
    half(app, "downgrade", op, customer)
    if outcome == "waiting":
        return
    if outcome == "expired":
        vendor(app, transfer_commands.expire_transfer, op, NOW + timedelta(hours=1), 900.0)
        return
    if outcome == "cancelled":
        run(app, transfer_commands.cancel_transfer, op, "ops", "not needed")
        return
    half(app, "upgrade", op, customer, seats=2 if outcome == "rejected" else 1)
    if outcome == "completed":
        vendor(app, transfer_commands.record_vendor_success, op, f"V-{op}", 1, 120)
    elif outcome == "parked":
        vendor(app, transfer_commands.record_vendor_failure, op, "VENDOR_UNAVAILABLE", "503 x8", True, 8)
    elif outcome == "vendor_rejected":
        vendor(app, transfer_commands.record_vendor_failure, op, "VENDOR_REJECTED", "400 plan retired", False, 1)


OUTCOMES = {"completed": "completed", "rejected": "rejected", "parked": "failed", "vendor_rejected": "failed",
            "waiting": "waiting_for_pair", "expired": "expired", "cancelled": "cancelled"}
