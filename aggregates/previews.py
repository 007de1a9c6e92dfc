"""What-ifs: the decision an order would get on a date, by the domain's own rules, recording
nothing. For each: the first reason code (the decision), every other rule that would refuse too,
and the first date from which it would pass."""

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from aggregates import errors
from aggregates.application import UnitOfWork, plain
from aggregates.calendar import CALENDAR_ID, Calendar
from aggregates.commands import _catalog, customer_holdings
from aggregates.halves import Downgrade, Upgrade, target_of
from aggregates.migration_rules import customer_refusals, product_refusals
from aggregates.transfer_commands import subscription_of
from aggregates.transfer_rules import transfer_refusals, vendor_request

# How far ahead the first passing date is looked for: past any subscription term the rules know.
HORIZON_DAYS = 1100


def business_date(uow: UnitOfWork) -> date | None:
    """The latest business date coterm has applied a message for (None: none yet)."""
    found = uow.get(Calendar, CALENDAR_ID)
    return found.today if found is not None else None


def _refusal(r: errors.Refusal) -> dict[str, Any]:
    return {"reason_code": r.reason, "detail": r.detail, "facts": plain(r.facts),
            "eligible_from": r.eligible_from.isoformat() if r.eligible_from else None}


def _first_pass(refused_on: Callable[[date], list[errors.Refusal]], on: date) -> date | None:
    """The first day from `on` on which nothing refuses; None within the horizon (a refusal no
    date cures, such as a seat count mismatch). Each day is cheap: the rules are pure."""
    for offset in range(HORIZON_DAYS + 1):
        day = on + timedelta(days=offset)
        if not refused_on(day):
            return day
    return None


def _verdict(refusals: list[errors.Refusal], refused_on: Callable[[date], list[errors.Refusal]], on: date) -> dict[str, Any]:
    passes = _first_pass(refused_on, on) if refusals else on
    return {"on": on.isoformat(), "decision": "rejected" if refusals else "accepted",
            "reason_code": refusals[0].reason if refusals else None,
            "detail": refusals[0].detail if refusals else None,
            "facts": plain(refusals[0].facts) if refusals else {},
            "refusals": [_refusal(r) for r in refusals],
            "eligible_from": passes.isoformat() if passes else None}


def preview_transfer(uow: UnitOfWork, source_id: str, seats: int, target: dict[str, Any], on: date) -> dict[str, Any]:
    """A transfer of `seats` from `source_id` whose two halves both arrive on `on`. `target`: as in
    the upgrade half, {"kind": "new_subscription", "plan_id", "term_months" (default: the
    source's), "product_id" (default: the source's)} or {"kind": "existing_subscription",
    "subscription_id"}."""
    source = subscription_of(uow, source_id)
    customer_id = source.customer_id if source else "?"
    spec = dict(target)
    if spec["kind"] == "new_subscription":
        spec.setdefault("new_subscription_id", "(new)")
        spec.setdefault("product_id", source.product_id if source else None)
        if spec.get("term_months") is None:
            spec["term_months"] = source.term_months if source else None
    existing = subscription_of(uow, spec["subscription_id"]) if spec["kind"] == "existing_subscription" else None
    order = {"operation_id": "(preview)", "order_id": "(preview)", "customer_id": customer_id, "seats": seats,
             "requested_by": "(preview)"}
    down = Downgrade(**order, subscription_id=source_id)
    up = Upgrade(**order, target=target_of(spec))

    def refused_on(day: date) -> list[errors.Refusal]:
        return transfer_refusals(down, up, source, existing, False, day)

    refusals = refused_on(on)
    verdict = _verdict(refusals, refused_on, on)
    verdict["source"] = {"subscription_id": source_id, "customer_id": source.customer_id if source else None,
                         "seats": source.seats if source else None,
                         "available_seats": source.available_seats if source else None,
                         "held_by": list(source.in_flight) if source else []}
    verdict["target"] = plain(spec)
    # The call the pair would make on that day: what the vendor would be asked to do.
    verdict["vendor_request"] = (vendor_request("(preview)", down, up, source, existing, on)
                                 if not refusals and source is not None else None)
    return verdict


def preview_migration(uow: UnitOfWork, customer_id: str, product_ids: list[str], on: date) -> dict[str, Any]:
    """Per product: what a `migration.requested` on `on` would decide (customer-level codes
    refuse every product), every code that applies, and the first day it would pass."""
    customer, subscriptions = customer_holdings(uow, customer_id)
    catalog = _catalog(uow)
    products = []
    for product_id in dict.fromkeys(product_ids):
        def refused_on(day: date, product_id: str = product_id) -> list[errors.Refusal]:
            return [*customer_refusals(customer, customer_id), *product_refusals(product_id, catalog, subscriptions, day)[0]]

        refusals = refused_on(on)
        verdict = _verdict(refusals, refused_on, on)
        migrating = product_refusals(product_id, catalog, subscriptions, on)[1] if not refusals else []
        verdict["migrating"] = [{"subscription_id": s.subscription_id, "subscription_key": s.subscription_key}
                                for s in sorted(migrating, key=lambda s: s.subscription_id)]
        products.append({"product_id": product_id, **verdict})
    accepted = any(p["decision"] == "accepted" for p in products)
    return {"customer_id": customer_id, "on": on.isoformat(), "decision": "completed" if accepted else "rejected",
            "products": products}
