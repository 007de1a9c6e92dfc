"""Pure rules for a paired seat transfer (CONTRACT.md section 3), checked in table order."""

from datetime import date, datetime, timedelta, timezone
from typing import Any

from aggregates import errors
from aggregates.ids import subscription_key
from aggregates.subscription import Subscription


def business_date(occurred_at: str) -> date:
    """The UTC date of an ISO timestamp with offset: the business clock."""
    return datetime.fromisoformat(occurred_at).astimezone(timezone.utc).date()


def transfer_date(down: dict[str, Any], up: dict[str, Any]) -> date:
    """Rules are evaluated at the later half's date."""
    return max(business_date(down["occurred_at"]), business_date(up["occurred_at"]))


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


def transfer_refusals(
    down: dict[str, Any],
    up: dict[str, Any],
    source: Subscription | None,
    target: Subscription | None,
    new_target_taken: bool,
    on: date,
) -> list[errors.Refusal]:
    """Every rule that refuses the pair on `on`, in table order (the first is the decision).
    A rule that needs the source (or the existing target) is only checked when it exists."""
    found: list[errors.Refusal] = []
    spec = up["target"]
    inactive = _inactive(source, down["subscription_id"], "source", on)
    if inactive:
        found.append(inactive)
    if spec["kind"] == "existing_subscription":
        inactive = _inactive(target, spec["subscription_id"], "target", on)
        if inactive:
            found.append(inactive)
        elif source is not None and target is not None and target.subscription_id == source.subscription_id:
            found.append(errors.SubscriptionUnknown("the target is the source subscription itself"))
    elif new_target_taken:
        found.append(errors.SubscriptionUnknown(
            f"new subscription id {spec['new_subscription_id']} already names a subscription"))
    if source is not None:
        customers = {down["customer_id"], up["customer_id"], source.customer_id} | ({target.customer_id} if target else set())
        if len(customers) > 1:
            found.append(errors.CustomerMismatch(
                f"downgrade names {down['customer_id']}, upgrade {up['customer_id']}, source belongs to "
                f"{source.customer_id}" + (f", target to {target.customer_id}" if target else ""),
                customers=sorted(customers),
            ))
    if down["seats"] != up["seats"]:
        found.append(errors.SeatCountMismatch(
            f"downgrade moves {down['seats']} seats, upgrade {up['seats']}",
            downgrade_seats=down["seats"], upgrade_seats=up["seats"],
        ))
    if source is None:
        return found
    available = source.available_seats
    if down["seats"] >= available:
        held = source.seats - available
        found.append(errors.InsufficientSeats(
            f"moving {down['seats']} of {available} available seats would leave none: at least one seat stays"
            + (f" ({source.seats} seats, {held} held by {len(source.in_flight)} transfer(s) in flight)" if held else ""),
            seats=down["seats"], source_seats=source.seats, held_seats=held, available_seats=available,
            held_by=list(source.in_flight),
        ))
    if source.resource_count != 1:
        found.append(errors.MultiResourcePlan(
            f"source plan has {source.resource_count} resources; only single-resource plans transfer",
            resource_count=source.resource_count,
        ))
    if on in (source.start_date, source.purchased_on):
        found.append(errors.SameDayAsPurchase(
            f"transfer date {on} is the source's start ({source.start_date}) or purchase day ({source.purchased_on})",
            eligible_from=on + timedelta(days=1),
        ))
    if on in source.upsized_on:
        found.append(errors.SameDayAsUpsize(f"the source was upsized on the transfer date {on}",
                                            eligible_from=on + timedelta(days=1)))
    target_term = spec["term_months"] if spec["kind"] == "new_subscription" else (target.term_months if target else None)
    if target_term is not None and target_term != source.term_months:
        found.append(errors.TermLengthMismatch(
            f"target term is {target_term} months, source term {source.term_months}",
            target_term_months=target_term, source_term_months=source.term_months,
        ))
    return found


def check_transfer(
    down: dict[str, Any],
    up: dict[str, Any],
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
    operation_id: str, down: dict[str, Any], up: dict[str, Any], source: Subscription, target: Subscription | None, on: date
) -> dict[str, Any]:
    """The one vendor call for the pair, as plain values (CONTRACT.md section 4)."""
    seats = down["seats"]
    spec = up["target"]
    # The seats as they will stand when its turn comes, if every transfer ahead goes through (the
    # outbox builds the body again then, from the seats confirmed, and records it only if they differ).
    source_seats = source.projected_seats
    if spec["kind"] == "new_subscription":
        target_change: dict[str, Any] = {
            "kind": "new_subscription",
            "subscription_id": spec["new_subscription_id"],
            "plan_id": spec["plan_id"],
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
