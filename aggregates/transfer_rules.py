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


def _require_active(sub: Subscription | None, sub_id: str, role: str, on: date) -> Subscription:
    if sub is None:
        raise errors.SubscriptionUnknown(f"{role} subscription {sub_id} was never purchased", subscription_id=sub_id)
    if not sub.is_active(on):
        raise errors.SubscriptionUnknown(
            f"{role} subscription {sub_id} is not active on {on} (runs {sub.start_date} to {sub.end_date})",
            subscription_id=sub_id,
            start_date=sub.start_date.isoformat(),
            end_date=sub.end_date.isoformat(),
        )
    return sub


def check_transfer(
    down: dict[str, Any],
    up: dict[str, Any],
    source: Subscription | None,
    target: Subscription | None,
    new_target_taken: bool,
    on: date,
) -> None:
    """Raise the first refusal that applies; return when the pair may go to the vendor."""
    spec = up["target"]
    source = _require_active(source, down["subscription_id"], "source", on)
    if spec["kind"] == "existing_subscription":
        target = _require_active(target, spec["subscription_id"], "target", on)
        if target.subscription_id == source.subscription_id:
            raise errors.SubscriptionUnknown("the target is the source subscription itself")
    elif new_target_taken:
        raise errors.SubscriptionUnknown(
            f"new subscription id {spec['new_subscription_id']} already names a subscription"
        )
    customers = {down["customer_id"], up["customer_id"], source.customer_id} | ({target.customer_id} if target else set())
    if len(customers) > 1:
        raise errors.CustomerMismatch(
            f"downgrade names {down['customer_id']}, upgrade {up['customer_id']}, source belongs to "
            f"{source.customer_id}" + (f", target to {target.customer_id}" if target else ""),
            customers=sorted(customers),
        )
    if down["seats"] != up["seats"]:
        raise errors.SeatCountMismatch(
            f"downgrade moves {down['seats']} seats, upgrade {up['seats']}",
            downgrade_seats=down["seats"], upgrade_seats=up["seats"],
        )
    if down["seats"] >= source.seats:
        raise errors.InsufficientSeats(
            f"moving {down['seats']} of {source.seats} seats would leave none: at least one seat stays",
            seats=down["seats"], source_seats=source.seats,
        )
    if source.resource_count != 1:
        raise errors.MultiResourcePlan(
            f"source plan has {source.resource_count} resources; only single-resource plans transfer",
            resource_count=source.resource_count,
        )
    if on in (source.start_date, source.purchased_on):
        raise errors.SameDayAsPurchase(
            f"transfer date {on} is the source's start ({source.start_date}) or purchase day ({source.purchased_on})",
            eligible_from=on + timedelta(days=1),
        )
    if on in source.upsized_on:
        raise errors.SameDayAsUpsize(f"the source was upsized on the transfer date {on}", eligible_from=on + timedelta(days=1))
    target_term = spec["term_months"] if spec["kind"] == "new_subscription" else target.term_months  # type: ignore[union-attr]
    if target_term != source.term_months:
        raise errors.TermLengthMismatch(
            f"target term is {target_term} months, source term {source.term_months}",
            target_term_months=target_term, source_term_months=source.term_months,
        )


def vendor_request(
    operation_id: str, down: dict[str, Any], up: dict[str, Any], source: Subscription, target: Subscription | None, on: date
) -> dict[str, Any]:
    """The one vendor call for the pair, as plain values (CONTRACT.md section 4)."""
    seats = down["seats"]
    spec = up["target"]
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
            "seats_before": target.seats,
            "seats_after": target.seats + seats,
        }
    return {
        "operation_id": operation_id,
        "customer_id": source.customer_id,
        "source": {"subscription_id": source.subscription_id, "seats_before": source.seats, "seats_after": source.seats - seats},
        "target": target_change,
        "seats": seats,
    }


def new_target_key(operation_id: str) -> str:
    return subscription_key("transfer", operation_id)
