"""Pure rules for a paired seat transfer (CONTRACT.md section 3), checked in table order."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from aggregates import errors
from aggregates.halves import (
    Downgrade,
    ExistingSubscription,
    NewSubscription,
    Target,
    Upgrade,
)
from aggregates.ids import subscription_key
from aggregates.subscription import Subscription


def transfer_date(down: Downgrade, up: Upgrade) -> date:
    """Rules are evaluated at the later half's date."""
    return max(down.order_date, up.order_date)


def _inactive(sub: Subscription | None, sub_id: str, role: str, on: date) -> errors.Refusal | None:
    if sub is None:
        return errors.SubscriptionUnknown(f"{role} subscription {sub_id} was never purchased", subscription_id=sub_id)
    if not sub.is_active(on):
        return errors.SubscriptionUnknown(
            f"{role} subscription {sub_id} is not active on {on} (runs {sub.start_date} to {sub.end_date})",
            eligible_from=sub.start_date if on < sub.start_date else None,
            subscription_id=sub_id,
            start_date=sub.start_date.isoformat(),
            end_date=sub.end_date.isoformat(),
        )
    return None


@dataclass(frozen=True)
class Pair:
    """What the transfer rules look at: both halves, the subscriptions they name, the date."""

    down: Downgrade
    up: Upgrade
    source: Subscription | None
    target: Subscription | None  # the existing target, when the upgrade names one
    new_target_taken: bool  # the new subscription id already names a subscription
    on: date

    @property
    def spec(self) -> Target:
        return self.up.target


Refusals = list[errors.Refusal]


def _subscriptions_known(p: Pair) -> Refusals:
    found = [r for r in [_inactive(p.source, p.down.subscription_id, "source", p.on)] if r]
    if isinstance(p.spec, ExistingSubscription):
        inactive = _inactive(p.target, p.spec.subscription_id, "target", p.on)
        if inactive:
            found.append(inactive)
        elif p.source is not None and p.target is not None and p.target.subscription_id == p.source.subscription_id:
            found.append(errors.SubscriptionUnknown("the target is the source subscription itself"))
    elif p.new_target_taken:
        found.append(errors.SubscriptionUnknown(
            f"new subscription id {p.spec.new_subscription_id} already names a subscription"))
    return found


def _one_customer(p: Pair, source: Subscription) -> Refusals:
    customers = {p.down.customer_id, p.up.customer_id, source.customer_id} | (
        {p.target.customer_id} if p.target else set())
    if len(customers) == 1:
        return []
    return [errors.CustomerMismatch(
        f"downgrade names {p.down.customer_id}, upgrade {p.up.customer_id}, source belongs to "
        f"{source.customer_id}" + (f", target to {p.target.customer_id}" if p.target else ""),
        customers=sorted(customers))]


def _same_seats(p: Pair) -> Refusals:
    if p.down.seats == p.up.seats:
        return []
    return [errors.SeatCountMismatch(f"downgrade moves {p.down.seats} seats, upgrade {p.up.seats}",
                                     downgrade_seats=p.down.seats, upgrade_seats=p.up.seats)]


def _enough_seats(p: Pair, source: Subscription) -> Refusals:
    available = source.available_seats
    if p.down.seats < available:
        return []
    held = source.seats - available
    return [errors.InsufficientSeats(
        f"moving {p.down.seats} of {available} available seats would leave none: at least one seat stays"
        + (f" ({source.seats} seats, {held} held by {len(source.in_flight)} transfer(s) in flight)" if held else ""),
        seats=p.down.seats, source_seats=source.seats, held_seats=held, available_seats=available,
        held_by=list(source.in_flight))]


def _single_resource(p: Pair, source: Subscription) -> Refusals:
    if source.resource_count == 1:
        return []
    return [errors.MultiResourcePlan(f"source plan has {source.resource_count} resources; only single-resource "
                                     "plans transfer", resource_count=source.resource_count)]


def _not_purchase_day(p: Pair, source: Subscription) -> Refusals:
    if p.on not in (source.start_date, source.purchased_on):
        return []
    return [errors.SameDayAsPurchase(
        f"transfer date {p.on} is the source's start ({source.start_date}) or purchase day ({source.purchased_on})",
        eligible_from=p.on + timedelta(days=1))]


def _not_upsize_day(p: Pair, source: Subscription) -> Refusals:
    if p.on not in source.upsized_on:
        return []
    return [errors.SameDayAsUpsize(f"the source was upsized on the transfer date {p.on}",
                                   eligible_from=p.on + timedelta(days=1))]


def _same_term(p: Pair, source: Subscription) -> Refusals:
    spec = p.spec
    term = spec.term_months if isinstance(spec, NewSubscription) else (p.target.term_months if p.target else None)
    if term is None or term == source.term_months:
        return []
    return [errors.TermLengthMismatch(f"target term is {term} months, source term {source.term_months}",
                                      target_term_months=term, source_term_months=source.term_months)]


# In table order (CONTRACT.md section 3). Rules about the source run only when it exists; the
# seat-count check does not need it, so it keeps its place in the table.
RULES: list[tuple[Callable[..., Refusals], bool]] = [
    (_subscriptions_known, False), (_one_customer, True), (_same_seats, False), (_enough_seats, True),
    (_single_resource, True), (_not_purchase_day, True), (_not_upsize_day, True), (_same_term, True),
]


def transfer_refusals(
    down: Downgrade,
    up: Upgrade,
    source: Subscription | None,
    target: Subscription | None,
    new_target_taken: bool,
    on: date,
) -> list[errors.Refusal]:
    """Every rule that refuses the pair on `on`, in table order (the first is the decision)."""
    pair = Pair(down, up, source, target, new_target_taken, on)
    found: Refusals = []
    for rule, needs_source in RULES:
        if needs_source:
            if source is not None:
                found += rule(pair, source)
        else:
            found += rule(pair)
    return found


def check_transfer(
    down: Downgrade,
    up: Upgrade,
    source: Subscription | None,
    target: Subscription | None,
    new_target_taken: bool,
    on: date,
) -> None:
    """Raise the first refusal that applies; return when the pair may go to the vendor."""
    refusals = transfer_refusals(down, up, source, target, new_target_taken, on)
    if refusals:
        raise refusals[0]


def vendor_request(
    operation_id: str, down: Downgrade, up: Upgrade, source: Subscription, target: Subscription | None, on: date
) -> dict[str, Any]:
    """The one vendor call for the pair, as plain values (CONTRACT.md section 4)."""
    seats = down.seats
    spec = up.target
    # The seats as they will stand when its turn comes, if every transfer ahead goes through (the
    # outbox builds the body again then, from the seats confirmed, and records it only if they differ).
    source_seats = source.projected_seats
    if isinstance(spec, NewSubscription):
        target_change: dict[str, Any] = {
            "kind": "new_subscription",
            "subscription_id": spec.new_subscription_id,
            "plan_id": spec.plan_id,
            "seats_before": 0,
            "seats_after": seats,
            "start_date": source.start_date.isoformat(),  # co-termed with the source
            "renewal_date": source.end_date.isoformat(),
            "billing_start_date": (on + timedelta(days=1)).isoformat(),  # billed from the next day
        }
    else:
        assert target is not None
        target_change = {
            "kind": "existing_subscription",
            "subscription_id": target.subscription_id,
            "seats_before": target.projected_seats,
            "seats_after": target.projected_seats + seats,
        }
    return {
        "operation_id": operation_id,
        "customer_id": source.customer_id,
        "source": {"subscription_id": source.subscription_id, "seats_before": source_seats,
                   "seats_after": source_seats - seats},
        "target": target_change,
        "seats": seats,
    }


def body_at_turn(request: dict[str, Any], source: Subscription, target: Subscription | None) -> dict[str, Any]:
    """The vendor call's body when its turn comes: the decided request with the seats the vendor
    has confirmed so far (every earlier transfer on these subscriptions has been answered)."""
    seats = request["seats"]
    body = {**request, "source": {**request["source"], "seats_before": source.seats,
                                  "seats_after": source.seats - seats}}
    if target is not None and request["target"]["kind"] == "existing_subscription":
        body["target"] = {**request["target"], "seats_before": target.seats, "seats_after": target.seats + seats}
    return body


def new_target_key(operation_id: str) -> str:
    return subscription_key("transfer", operation_id)
