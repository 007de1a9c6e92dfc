"""Seat transfer commands: record halves and pair them, decide, hold seats in line (contract 1.2),
give the outbox its turn, and record what the vendor answered, what staff did, what expired."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from aggregates import errors
from aggregates.application import UnitOfWork, plain
from aggregates.context import Context
from aggregates.customer import Customer
from aggregates.halves import Downgrade, ExistingSubscription, Half, NewSubscription, Upgrade, half_of
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer
from aggregates.transfer_rules import (
    body_at_turn,
    check_transfer,
    new_target_key,
    transfer_date,
    vendor_request,
)


def subscription_of(uow: UnitOfWork, subscription_id: str) -> Subscription | None:
    return uow.get(Subscription, Subscription.create_id(subscription_id))


def customer_of(uow: UnitOfWork, customer_id: str) -> Customer | None:
    return uow.get(Customer, Customer.create_id(customer_id))


def load_touched(uow: UnitOfWork, operation_ids: list[str], customers: list[str]) -> None:
    """Load the subscriptions these operations' calls touch, and the customers of `customers`
    (those whose outcome is recorded: a new target joins its customer), a query for each kind
    instead of two per aggregate the cache lacks (the outbox's round, after a restart or a
    version conflict that evicted what the round had changed). A new target is looked for only
    where the outcome is recorded (it may exist, made by an earlier attempt); a turn reads only
    the subscriptions that exist (`_touched`)."""
    requests = {}
    for op in operation_ids:
        transfer = uow.get(Transfer, Transfer.create_id(op))
        if transfer is not None and transfer.vendor_request is not None:
            requests[op] = transfer.vendor_request
    recorded = set(customers)
    uow.load_many(Subscription, [Subscription.create_id(r[side]["subscription_id"]) for op, r in requests.items()
                                 for side in ("source", "target") if side == "source" or op in recorded
                                 or r["target"]["kind"] == "existing_subscription"])
    uow.load_many(Customer, [Customer.create_id(requests[op]["customer_id"]) for op in customers if op in requests])


def pin_body(uow: UnitOfWork, operation_id: str) -> None:
    """The call first in line may be out with its decided body, which is recorded only when it
    differs from the one built at its turn: record it before a resize changes the seats that
    body would be built from, so every resend of the call sends what the first send did."""
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None or not transfer.awaiting_vendor or transfer.body_sent() is not None:
        return
    assert transfer.vendor_request is not None
    source, target = _touched(uow, transfer.vendor_request)
    touched = [s for s in (source, target) if s is not None]
    if source is None or any(s.first_in_line() != operation_id for s in touched):
        return  # not its turn yet on another subscription: not out, its body is built at its turn
    transfer.mark_sent(body_at_turn(transfer.vendor_request, source, target))


def _transfer(uow: UnitOfWork, operation_id: str) -> Transfer:
    return uow.get(Transfer, Transfer.create_id(operation_id)) or uow.add(Transfer(operation_id=operation_id))


def add_half(uow: UnitOfWork, ctx: Context, side: str, order: dict[str, Any]) -> Transfer:
    """Record one half (`order`: the wire payload's values); when it completes the pair, decide
    and (maybe) request the vendor call."""
    half = half_of(side, {**order, "message_id": ctx.message_id, "occurred_at": ctx.occurred_at.isoformat(),
                          "recorded_at": ctx.recorded_at.isoformat()})
    transfer = uow.get(Transfer, Transfer.create_id(half.operation_id))
    if transfer is None:  # the first word of this operation: it opens holding this half
        return uow.add(Transfer.opened_by(half))
    try:
        pair = transfer.add_half(half)
    except errors.Refusal as refusal:
        transfer.refuse(refusal.reason, refusal.detail, half.order_id, ctx.message_id)
        return transfer
    if pair is not None:
        _decide_pair(uow, transfer, half, pair, ctx)
    return transfer


def _decide_pair(uow: UnitOfWork, transfer: Transfer, half: Half, pair: tuple[Downgrade, Upgrade], ctx: Context) -> None:
    """`half`, the one completing the pair, is recorded with the decision: in the vendor call's event."""
    down, up = pair
    spec = up.target
    on = transfer_date(down, up)
    source = subscription_of(uow, down.subscription_id)
    target = subscription_of(uow, spec.subscription_id) if isinstance(spec, ExistingSubscription) else None
    taken = isinstance(spec, NewSubscription) and subscription_of(uow, spec.new_subscription_id) is not None
    try:
        check_transfer(down, up, source, target, taken, on)
    except errors.Refusal as refusal:
        facts = plain({**refusal.facts, "transfer_date": on, "eligible_from": refusal.eligible_from})
        transfer.receive(half)
        transfer.reject(refusal.reason, refusal.detail, facts, None, ctx.message_id)
        return
    assert source is not None
    request = vendor_request(transfer.operation_id, down, up, source, target, on)
    transfer.request_vendor_call(request, up.requested_by, ctx.message_id, paired_by=half)
    _hold(uow, transfer, ctx.message_id)


def _touched(uow: UnitOfWork, request: dict[str, Any]) -> tuple[Subscription | None, Subscription | None]:
    """The source and the existing target (None for a new one) a vendor request changes."""
    source = subscription_of(uow, request["source"]["subscription_id"])
    spec = request["target"]
    target = subscription_of(uow, spec["subscription_id"]) if spec["kind"] == "existing_subscription" else None
    return source, target


def _hold(uow: UnitOfWork, transfer: Transfer, cause: str) -> None:
    """The decided transfer holds its seats and takes its place on every subscription it touches."""
    assert transfer.vendor_request is not None
    source, target = _touched(uow, transfer.vendor_request)
    if source is not None:
        source.hold(transfer.operation_id, transfer.vendor_request["seats"], cause)
    if target is not None:
        target.hold(transfer.operation_id, -transfer.vendor_request["seats"], cause)


def _release(uow: UnitOfWork, transfer: Transfer, reason: str, cause: str) -> None:
    if transfer.vendor_request is None:
        return
    for subscription in _touched(uow, transfer.vendor_request):
        if subscription is not None:
            subscription.release(transfer.operation_id, reason, cause)


@dataclass(frozen=True)
class Turn:
    """Whether a requested vendor call may go now: its body, or the transfers it waits for."""

    body: dict[str, Any] | None
    waits_for: list[str]


def take_turn(uow: UnitOfWork, operation_id: str) -> Turn | None:
    """The outbox asks before sending a requested call (CONTRACT.md, transfers in flight): it goes
    only when it is first in line on every subscription it touches; its body is built then, from
    the seats confirmed so far, and recorded (`VendorCallSent`), so every retry of it, by this
    outbox or the next leader's, sends the same body. None: no call is awaited any more."""
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None or not transfer.awaiting_vendor or transfer.vendor_request is None:
        return None
    source, target = _touched(uow, transfer.vendor_request)
    touched = [s for s in (source, target) if s is not None]
    # A call requested before transfers were held (an older version) holds no place: it waits for nobody.
    ahead = [op for s in touched if operation_id in s.in_flight for op in s.ahead_of(operation_id)]
    if ahead:
        return Turn(None, list(dict.fromkeys(ahead)))
    body = transfer.body_sent()
    if body is None:
        assert source is not None
        body = body_at_turn(transfer.vendor_request, source, target)
        if body == transfer.vendor_request:
            # What was decided, from the seats every transfer ahead was to leave, and they did:
            # nothing to record (a resend finds the same again).
            return Turn(body, [])
        transfer.mark_sent(body)  # recorded before it is sent: a resend after a takeover sends the same
    return Turn(body, [])


def mark_vendor_call_sent(uow: UnitOfWork, operation_id: str) -> bool:
    """A call sent with its decided body that the vendor has not answered within a second shows as `sent`."""
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None or transfer.status != "paired":
        return False
    transfer.mark_sent(None)
    return True


def cancel_transfer(uow: UnitOfWork, ctx: Context, operation_id: str, requested_by: str, reason: str) -> Transfer:
    transfer = _transfer(uow, operation_id)
    try:
        transfer.cancel(requested_by, reason, ctx.message_id)
    except errors.Refusal as refusal:
        transfer.refuse(refusal.reason, refusal.detail, None, ctx.message_id)
        return transfer
    _release(uow, transfer, "cancelled", ctx.message_id)  # a parked call frees its seats and its place
    return transfer


def staff_cancel(uow: UnitOfWork, operation_id: str, requested_by: str, reason: str, action_id: str) -> Transfer:
    """An operator's cancel (API, dashboard); raises a Refusal instead of recording it. Like a
    cancel message, a parked call frees its seats and its place for the transfers behind it."""
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None:
        raise errors.OperationClosed(f"operation {operation_id} is unknown")
    transfer.cancel(requested_by, reason, action_id)
    _release(uow, transfer, "cancelled", action_id)
    return transfer


def staff_action(uow: UnitOfWork, action: str, operation_id: str, requested_by: str, reason: str,
                 action_id: str) -> Transfer:
    """What an operator asks of an operation (`cancel` or `retry`): the one path the API's actions
    and its dry runs (which buttons to offer) both take. Raises a Refusal when it cannot."""
    act = {"cancel": staff_cancel, "retry": retry_transfer}[action]
    return act(uow, operation_id, requested_by, reason, action_id)


def retry_transfer(uow: UnitOfWork, operation_id: str, requested_by: str, reason: str, action_id: str) -> Transfer:
    """An operator's retry of a parked vendor failure; raises a Refusal when there is none."""
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None:
        raise errors.OperationClosed(f"operation {operation_id} is unknown")
    was_parked = transfer.parked
    if not was_parked and transfer.vendor_request is not None and transfer.status == "failed":
        # A refused call released its seats: a retry is a new call, which must find them again.
        source, _ = _touched(uow, transfer.vendor_request)
        seats = transfer.vendor_request["seats"]
        if source is not None and seats >= source.available_seats:
            raise errors.InsufficientSeats(
                f"moving {seats} of {source.available_seats} available seats would leave none",
                seats=seats, source_seats=source.seats, available_seats=source.available_seats)
    transfer.retry(requested_by, reason, action_id)
    if not was_parked:
        _hold(uow, transfer, action_id)  # a parked call kept its seats and its place
    return transfer


def expire_transfer(uow: UnitOfWork, operation_id: str, now: datetime, timeout_s: float) -> bool:
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None or transfer.status != "waiting_for_pair":
        return False
    if (now - transfer.first_recorded_at).total_seconds() < timeout_s:
        return False
    transfer.expire(now, timeout_s)
    return True


def record_vendor_success(uow: UnitOfWork, operation_id: str, vendor_reference: str, attempts: int, latency_ms: int) -> bool:
    """The vendor did it: complete the operation and move the seats, exactly once."""
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None or not transfer.awaiting_vendor:
        return False  # already recorded (e.g. by an earlier run): the outcome stands
    assert transfer.vendor_request is not None and transfer.call_cause is not None
    request, cause = transfer.vendor_request, transfer.call_cause
    transfer.complete(vendor_reference, attempts, latency_ms, cause)
    seats = request["seats"]
    source = subscription_of(uow, request["source"]["subscription_id"])
    assert source is not None
    source.transfer_out(transfer.operation_id, seats, cause)
    target_id = request["target"]["subscription_id"]
    target = subscription_of(uow, target_id)
    if target is not None:
        target.transfer_in(transfer.operation_id, seats, cause)
    else:
        _create_cotermed_target(uow, transfer, source, request, cause)
    return True


def _create_cotermed_target(uow: UnitOfWork, transfer: Transfer, source: Subscription, request: dict[str, Any], cause: str) -> None:
    spec = transfer.upgrade.target if transfer.upgrade else None
    assert isinstance(spec, NewSubscription)
    target = request["target"]
    billing_start = date.fromisoformat(target["billing_start_date"])
    uow.add(
        Subscription(
            subscription_id=target["subscription_id"], customer_id=source.customer_id, product_id=spec.product_id,
            plan_id=spec.plan_id, billing_model=source.billing_model, management=source.management,
            seats=request["seats"], term_months=spec.term_months, start_date=source.start_date,
            end_date=source.end_date, subscription_key=new_target_key(transfer.operation_id),
            resource_count=source.resource_count, purchased_on=billing_start - timedelta(days=1),
            billing_start_date=billing_start, origin=f"transfer:{transfer.operation_id}", message_id=cause,
        )
    )
    customer = customer_of(uow, source.customer_id)
    if customer is not None:
        customer.add_subscription(target["subscription_id"], cause)


def record_vendor_failure(uow: UnitOfWork, operation_id: str, reason_code: str, detail: str, retryable: bool, attempts: int) -> bool:
    transfer = uow.get(Transfer, Transfer.create_id(operation_id))
    if transfer is None or not transfer.awaiting_vendor:
        return False
    assert transfer.call_cause is not None
    transfer.fail(reason_code, detail, retryable, attempts, transfer.call_cause)
    if not retryable:  # answered for good: the seats and the place go; a parked call keeps both
        _release(uow, transfer, reason_code, transfer.call_cause)
    return True
