"""Seat drift: what a reconciliation pass records from the vendor's count, and what staff do
about it (CONTRACT.md section 7). Pure decisions on the Subscription aggregate; no I/O."""

from enum import Enum

from aggregates import errors
from aggregates.application import UnitOfWork
from aggregates.subscription import Subscription


class Observed(str, Enum):
    AGREES = "agrees"
    DRIFT = "drift"  # a new pair of counts recorded
    KNOWN = "known"  # the standing drift again: nothing recorded
    CLEARED = "cleared"  # the two agree again: the standing drift is closed
    MOVED = "moved"  # changed (or a call went into flight) since the count was asked for: come back to it
    UNKNOWN = "unknown"  # coterm has no such subscription


def subscription_of(uow: UnitOfWork, subscription_id: str) -> Subscription | None:
    return uow.get(Subscription, Subscription.create_id(subscription_id))


def record_vendor_seats(uow: UnitOfWork, subscription_id: str, vendor_seats: int, seen_version: int,
                        found_at: str, found_by: str) -> Observed:
    """The vendor's count, asked for after coterm's subscription was seen at `seen_version`
    with nothing in flight. Anything recorded on it since (a transfer held, its outcome, a
    resize) may explain a difference, and the vendor may have answered before or after that
    call: such a count proves nothing, and the subscription is looked at again later."""
    subscription = subscription_of(uow, subscription_id)
    if subscription is None:
        return Observed.UNKNOWN
    if subscription.version != seen_version or subscription.in_flight:
        return Observed.MOVED
    standing = subscription.drift_pair
    if not subscription.observe_vendor(vendor_seats, found_at, found_by):
        return Observed.AGREES if vendor_seats == subscription.seats else Observed.KNOWN
    return Observed.CLEARED if standing is not None and vendor_seats == subscription.seats else Observed.DRIFT


def _standing(uow: UnitOfWork, subscription_id: str) -> Subscription:
    subscription = subscription_of(uow, subscription_id)
    if subscription is None or subscription.drift_pair is None:
        raise errors.NoDrift(f"subscription {subscription_id} has no open or explained seat drift")
    return subscription


def resolve_drift(uow: UnitOfWork, subscription_id: str, by: str, why: str, action_id: str) -> Subscription:
    """Record the vendor's count as coterm's. Refused while a transfer is in flight on it (its
    call may change the vendor's count, and its body was built from coterm's), and when coterm's
    seats changed since the drift was found (the vendor's count was read against other seats)."""
    subscription = _standing(uow, subscription_id)
    coterm_seats, vendor_seats = subscription.drift_pair  # type: ignore[misc]
    if subscription.in_flight:
        raise errors.TransferInFlight(
            f"transfers {', '.join(subscription.in_flight)} are in flight on {subscription_id}: resolve once they end",
            in_flight=list(subscription.in_flight))
    if subscription.seats != coterm_seats:
        raise errors.DriftStale(
            f"coterm's seats are {subscription.seats} now, not the {coterm_seats} the drift was found against: "
            "reconcile it again", seats=subscription.seats, coterm_seats=coterm_seats)
    subscription.resolve_drift(seats=vendor_seats, previous_seats=coterm_seats, by=by, why=why, action_id=action_id)
    return subscription


def explain_drift(uow: UnitOfWork, subscription_id: str, by: str, why: str, action_id: str) -> Subscription:
    """Staff know why the counts differ and keep coterm's: the drift stays on record, explained,
    and is not counted as open; a different pair of counts later is a new drift."""
    subscription = _standing(uow, subscription_id)
    subscription.explain_drift(by=by, why=why, action_id=action_id)
    return subscription
