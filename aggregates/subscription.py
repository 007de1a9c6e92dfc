"""One vendor subscription: plan, billing model, seats and the dates the rules look at.

Transfers in flight (CONTRACT.md section 3, 1.2): from the moment a transfer is decided until
the vendor answers it for good, the subscriptions it touches hold it in `in_flight`, in
decision order. A source counts the seats leaving as gone (`available_seats`); every touched
subscription lets only its first transfer in flight go to the vendor (`first_in_line`), so the
vendor's accepted calls on it form a chain of seat counts. Holding it here, on the aggregate,
makes two processors deciding from one source at once conflict (a version check) instead of
both passing `INSUFFICIENT_SEATS`.

Seat drift (CONTRACT.md section 7, 1.3): what reconciliation found when the vendor's count
differed from coterm's, kept in `drift` until staff resolve it, explain it, or the two agree
again. It never changes the seats by itself; only a resolve does, with who and why.
"""

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class Subscription(Aggregate):
    # Version 2 added `in_flight`, version 3 `drift`; snapshots taken before had none.
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["in_flight"] = {}

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["drift"] = None

    @staticmethod
    def create_id(subscription_id: str, **_: Any) -> UUID:
        return aggregate_id("subscriptions", subscription_id)

    @event("Purchased")
    def __init__(
        self,
        subscription_id: str,
        customer_id: str,
        product_id: str,
        plan_id: str,
        billing_model: str,
        management: str,
        seats: int,
        term_months: int,
        start_date: date,
        end_date: date,
        subscription_key: str,
        resource_count: int,
        purchased_on: date,
        billing_start_date: date,
        origin: str,
        message_id: str,
    ) -> None:
        self.subscription_id = subscription_id
        self.customer_id = customer_id
        self.product_id = product_id
        self.plan_id = plan_id
        self.billing_model = billing_model
        self.management = management
        self.seats = seats
        self.term_months = term_months
        self.start_date = start_date
        self.end_date = end_date
        self.subscription_key = subscription_key
        self.resource_count = resource_count
        self.purchased_on = purchased_on
        self.billing_start_date = billing_start_date
        self.origin = origin  # "purchase", or "transfer:<operation_id>" for a co-termed target
        self.upsized_on: list[date] = []
        # operation id -> seats it takes away (negative: seats it brings, as a target), in decision order
        self.in_flight: dict[str, int] = {}
        # The last seat drift reconciliation found: None, or its counts, when, who, and its status
        # ("open", "explained", "resolved", "cleared": the vendor agrees again).
        self.drift: dict[str, Any] | None = None

    def is_active(self, on: date) -> bool:
        return self.start_date <= on <= self.end_date

    def resize(self, seats: int, on: date, message_id: str) -> None:
        if seats != self.seats:
            self._resized(seats=seats, previous_seats=self.seats, on=on, message_id=message_id)

    @event("Resized")
    def _resized(self, seats: int, previous_seats: int, on: date, message_id: str) -> None:
        self.seats = seats
        if seats > previous_seats:
            self.upsized_on.append(on)

    @event("MigratedToUsageBased")
    def migrate_to_usage_based(self, request_id: str, previous_billing_model: str, message_id: str) -> None:
        self.billing_model = "usage_based"  # the key stays the same: nothing to reconfigure

    # -- transfers in flight ---------------------------------------------------------------
    @property
    def available_seats(self) -> int:
        """Seats less those held by transfers out of it that the vendor has not answered yet
        (seats on their way in do not count until the vendor confirms them)."""
        return self.seats - sum(v for v in self.in_flight.values() if v > 0)

    @property
    def projected_seats(self) -> int:
        """The seats it will have once every transfer in flight on it is done: what the next
        transfer decided on it will tell the vendor, if they all go through."""
        return self.seats - sum(self.in_flight.values())

    def first_in_line(self) -> str | None:
        return next(iter(self.in_flight), None)

    def ahead_of(self, operation_id: str) -> list[str]:
        """The transfers in flight decided before this one (all of them when it holds none)."""
        ahead = []
        for op in self.in_flight:
            if op == operation_id:
                break
            ahead.append(op)
        return ahead

    def hold(self, operation_id: str, seats_out: int, message_id: str) -> None:
        """A transfer touching this subscription was decided: it waits its turn (seats_out: the
        seats it takes away; negative for a target, the seats it brings)."""
        if operation_id not in self.in_flight:
            self.trigger_event(self.TransferHeld, operation_id=operation_id, seats_out=seats_out, message_id=message_id)

    @event("TransferHeld")
    def _transfer_held(self, operation_id: str, seats_out: int, message_id: str) -> None:
        self.in_flight = {**self.in_flight, operation_id: seats_out}

    def release(self, operation_id: str, reason: str, message_id: str) -> None:
        """The vendor refused it for good, or staff cancelled it: its seats and its place are free."""
        if operation_id in self.in_flight:
            self._transfer_released(operation_id=operation_id, reason=reason, message_id=message_id)

    @event("TransferReleased")
    def _transfer_released(self, operation_id: str, reason: str, message_id: str) -> None:
        self.in_flight = {k: v for k, v in self.in_flight.items() if k != operation_id}

    # The vendor confirmed: the seats move and the transfer leaves the line, in one event. The
    # events every transfer writes are triggered by class, not through the `@event` method's
    # argument binding: 11 us instead of 18 each (tests/unit/test_event_versions.py keeps their shape).
    def transfer_out(self, operation_id: str, seats: int, message_id: str) -> None:
        self.trigger_event(self.SeatsTransferredOut, operation_id=operation_id, seats=seats, message_id=message_id)

    @event("SeatsTransferredOut")
    def _seats_transferred_out(self, operation_id: str, seats: int, message_id: str) -> None:
        self.seats -= seats
        self.in_flight = {k: v for k, v in self.in_flight.items() if k != operation_id}

    def transfer_in(self, operation_id: str, seats: int, message_id: str) -> None:
        self.trigger_event(self.SeatsTransferredIn, operation_id=operation_id, seats=seats, message_id=message_id)

    @event("SeatsTransferredIn")
    def _seats_transferred_in(self, operation_id: str, seats: int, message_id: str) -> None:
        self.seats += seats
        self.in_flight = {k: v for k, v in self.in_flight.items() if k != operation_id}

    # -- seat drift (reconciliation with the vendor) -----------------------------------------
    @property
    def drift_pair(self) -> tuple[int, int] | None:
        """(coterm's seats, the vendor's) of the drift still standing (open or explained)."""
        if self.drift is None or self.drift["status"] not in ("open", "explained"):
            return None
        return self.drift["coterm_seats"], self.drift["vendor_seats"]

    def observe_vendor(self, vendor_seats: int, found_at: str, found_by: str) -> bool:
        """The vendor's count, read while nothing was in flight: a drift is recorded once per
        distinct pair of counts in a row (a repeated pass over the same difference records
        nothing), and the standing one is cleared when the two agree again. True: recorded."""
        pair = (self.seats, vendor_seats)
        if vendor_seats != self.seats and pair != self.drift_pair:
            self._drift_found(coterm_seats=self.seats, vendor_seats=vendor_seats, found_at=found_at, found_by=found_by)
            return True
        if vendor_seats == self.seats and self.drift_pair is not None:
            self._drift_cleared(seats=vendor_seats, found_at=found_at, found_by=found_by)
            return True
        return False

    @event("DriftFound")
    def _drift_found(self, coterm_seats: int, vendor_seats: int, found_at: str, found_by: str) -> None:
        self.drift = {"status": "open", "coterm_seats": coterm_seats, "vendor_seats": vendor_seats,
                      "found_at": found_at, "found_by": found_by}

    @event("DriftCleared")
    def _drift_cleared(self, seats: int, found_at: str, found_by: str) -> None:
        assert self.drift is not None
        self.drift = {**self.drift, "status": "cleared", "cleared_at": found_at, "cleared_by": found_by}

    @event("DriftExplained")
    def explain_drift(self, by: str, why: str, action_id: str) -> None:
        assert self.drift is not None
        self.drift = {**self.drift, "status": "explained", "by": by, "why": why}

    # The vendor's count becomes coterm's, like a transfer's seat change but with who and why in
    # place of an operation; it is not an upsize (coterm does not know when the vendor's changed).
    @event("DriftResolved")
    def resolve_drift(self, seats: int, previous_seats: int, by: str, why: str, action_id: str) -> None:
        assert self.drift is not None
        self.seats = seats
        self.drift = {**self.drift, "status": "resolved", "by": by, "why": why}
