"""A partial seat transfer: one aggregate per operation id, holding both halves.

Status: open (a cancel came first) -> waiting_for_pair -> paired (vendor call requested)
-> sent (handed to the vendor client) -> completed | failed; or rejected / cancelled / expired. A failure with `retryable`
parks the operation (status failed, parked) until an operator retries or cancels it.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.errors import AlreadySent, DuplicateHalf, OperationClosed
from aggregates.halves import Downgrade, Half, Upgrade, half_of
from aggregates.ids import aggregate_id

SIDES = ("downgrade", "upgrade")
CLOSED = frozenset({"completed", "rejected", "failed", "cancelled", "expired"})


class Transfer(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(operation_id: str) -> UUID:
        return aggregate_id("transfers", operation_id)

    class Opened(Aggregate.Created):
        """Version 2 carries the half that opened the operation (None when a cancel came first):
        one event where there were two (`Opened`, then `HalfReceived`). Version 3 carries `call`,
        the vendor call requested when the other half came in the same unit of work (a batch
        holding both): the fields of a `VendorCallRequested` but `operation_id`, one event where
        there were two (issue 29). None when the operation opened waiting for its pair."""

        class_version = 3
        operation_id: str
        side: str | None
        half: dict[str, Any] | None
        message_id: str | None
        call: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(side=None, half=None, message_id=None)

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["call"] = None

    @classmethod
    def opened_by(cls, half: Half) -> "Transfer":
        """The first word of an operation is one of its halves: the operation opens holding it."""
        return cls(operation_id=half.operation_id, side=half.side, half=half.stored(), message_id=half.message_id)

    @event(Opened)
    def __init__(self, operation_id: str, side: str | None = None, half: dict[str, Any] | None = None,
                 message_id: str | None = None, call: dict[str, Any] | None = None) -> None:
        """`half`: stored values (`Half.stored()`); use `opened_by` to open with a half. `call`:
        set only by `request_vendor_call` on an operation opened in the same unit of work."""
        self.operation_id = operation_id
        self.status = "open"
        self.halves: dict[str, Half] = {}
        if side is not None and half is not None:
            self.halves[side] = half_of(side, half)
            self.status = "waiting_for_pair"
        self.vendor_request: dict[str, Any] | None = None
        self.idempotency_key: str | None = None
        self.call_cause: str | None = None  # message_id of the pairing half, or of an operator's retry
        self.parked = False
        self.outcome: dict[str, Any] | None = None
        self.vendor_rounds = 0
        self.sent_request: dict[str, Any] | None = None  # the body the vendor was sent (VendorCallSent)
        self.sent_key: str | None = None  # and the Idempotency-Key it went under
        if call is not None:
            self._take_call(**call)

    # -- halves ------------------------------------------------------------------------
    def add_half(self, half: Half) -> tuple[Downgrade, Upgrade] | None:
        """Take a half. When it completes the pair it is not recorded here: the pair (with it) is
        returned for the decision, which records it in the same event as the vendor call
        (`request_vendor_call(..., paired_by=half)`), or with `receive` before a rejection. Any
        other new half is recorded at once; the same order again changes nothing. Raises a
        non-final refusal."""
        side = half.side
        # Contract table order: DUPLICATE_HALF is checked before OPERATION_CLOSED.
        first = self.halves.get(side)
        if first is not None and not first.same_order(half):
            raise DuplicateHalf(
                f"operation {self.operation_id} already has a {side} (order {first.order_id})",
                first_order_id=first.order_id,
            )
        if self.status in CLOSED:
            raise OperationClosed(f"operation {self.operation_id} is already {self.status}", status=self.status)
        if first is not None:
            return None  # the same order sent again under a new message_id: nothing changes
        down = half if isinstance(half, Downgrade) else self.downgrade
        up = half if isinstance(half, Upgrade) else self.upgrade
        if down is not None and up is not None:
            return down, up
        self.receive(half)
        return None

    def receive(self, half: Half) -> None:
        self.trigger_event(self.HalfReceived, side=half.side, half=half.stored(), message_id=half.message_id)

    @event("HalfReceived")
    def _half_received(self, side: str, half: dict[str, Any], message_id: str) -> None:
        self.halves[side] = half_of(side, half)
        if self.status == "open":
            self.status = "waiting_for_pair"

    @property
    def downgrade(self) -> Downgrade | None:
        half = self.halves.get("downgrade")
        return half if isinstance(half, Downgrade) else None

    @property
    def upgrade(self) -> Upgrade | None:
        half = self.halves.get("upgrade")
        return half if isinstance(half, Upgrade) else None

    @property
    def first_half_message_id(self) -> str | None:
        earliest = min(self.halves.values(), key=lambda h: h.recorded, default=None)
        return earliest.message_id if earliest else None

    def refuse(self, reason_code: str, detail: str, order_id: str | None, message_id: str) -> None:
        """Answer one message with a non-final refusal; the operation stays as it was."""
        self._message_refused(
            operation_id=self.operation_id, reason_code=reason_code, detail=detail, order_id=order_id, message_id=message_id
        )

    @event("MessageRefused")
    def _message_refused(self, operation_id: str, reason_code: str, detail: str, order_id: str | None, message_id: str) -> None:
        pass

    # -- decisions at pairing -----------------------------------------------------------
    def reject(self, reason_code: str, detail: str, facts: dict[str, Any], order_id: str | None, message_id: str) -> None:
        self._rejected(
            operation_id=self.operation_id, reason_code=reason_code, detail=detail, facts=facts,
            order_id=order_id, message_id=message_id,
        )

    @event("Rejected")
    def _rejected(
        self, operation_id: str, reason_code: str, detail: str, facts: dict[str, Any], order_id: str | None, message_id: str
    ) -> None:
        self.status = "rejected"
        self.outcome = {"reason_code": reason_code, "detail": detail, "facts": facts}

    def request_vendor_call(self, request: dict[str, Any], requested_by: str, message_id: str, reason: str = "paired",
                            idempotency_key: str | None = None, paired_by: Half | None = None) -> None:
        """`paired_by`: the half that completed the pair, recorded in this event (`add_half`). An
        operation opened in this unit of work (both halves in one batch) records the call in its
        `Opened` event, not yet stored, instead of an event of its own."""
        call = {"request": request, "requested_by": requested_by, "reason": reason, "message_id": message_id,
                "idempotency_key": idempotency_key or self.operation_id,
                "side": paired_by.side if paired_by else None, "half": paired_by.stored() if paired_by else None}
        pending = self._pending_events
        if self.version == 1 and len(pending) == 1 and type(pending[0]) is self.Opened and pending[0].call is None:
            # The same event with `call` set, made as the library's mapper makes a stored one
            # (`dataclasses.replace` runs the frozen class's checks again: 4% of the consumer).
            opened = object.__new__(self.Opened)
            opened.__dict__.update(vars(pending[0]), call=call)
            pending[0] = opened
            self._take_call(**call)
            return
        self.trigger_event(self.VendorCallRequested, operation_id=self.operation_id, **call)

    class VendorCallRequested(Aggregate.Event):
        """Version 2 added `reason` (why the call was requested: "paired", or an operator's words).
        Version 3 added `idempotency_key`: the operation id, except for a staff retry of a call the
        vendor refused (VENDOR_REJECTED), which is a new request under a key of its own.
        Version 4 carries the half that completed the pair (`side`, `half`; None on a retry), one
        event where a decided pair had two (`HalfReceived`, then this): issue 29."""

        class_version = 4
        request: dict[str, Any]
        requested_by: str
        reason: str
        message_id: str
        operation_id: str
        idempotency_key: str
        side: str | None
        half: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = "paired"

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["idempotency_key"] = state["operation_id"]

        @staticmethod
        def upcast_v3_v4(state: dict[str, Any]) -> None:
            state.update(side=None, half=None)

    @event(VendorCallRequested)
    def _vendor_call_requested(
        self, operation_id: str, request: dict[str, Any], requested_by: str, reason: str, message_id: str,
        idempotency_key: str, side: str | None, half: dict[str, Any] | None,
    ) -> None:
        self._take_call(request, requested_by, reason, message_id, idempotency_key, side, half)

    def _take_call(self, request: dict[str, Any], requested_by: str, reason: str, message_id: str,
                   idempotency_key: str, side: str | None, half: dict[str, Any] | None) -> None:
        """What a requested vendor call does to the operation, from either event that records one."""
        if side is not None and half is not None:
            self.halves[side] = half_of(side, half)
        self.vendor_request = request
        self.idempotency_key = idempotency_key
        self.call_cause = message_id
        self.status = "paired"
        self.parked = False
        self.outcome = None
        self.vendor_rounds += 1

    # -- vendor outcomes ----------------------------------------------------------------
    def complete(self, vendor_reference: str, attempts: int, vendor_latency_ms: int, message_id: str) -> None:
        assert self.vendor_request is not None
        self.trigger_event(
            self.Completed,
            operation_id=self.operation_id,
            source_subscription_id=self.vendor_request["source"]["subscription_id"],
            target_subscription_id=self.vendor_request["target"]["subscription_id"],
            seats=self.vendor_request["seats"],
            vendor_reference=vendor_reference, attempts=attempts, vendor_latency_ms=vendor_latency_ms, message_id=message_id,
        )

    @event("Completed")
    def _completed(
        self, operation_id: str, source_subscription_id: str, target_subscription_id: str, seats: int,
        vendor_reference: str, attempts: int, vendor_latency_ms: int, message_id: str,
    ) -> None:
        self.status = "completed"
        self.outcome = {"vendor_reference": vendor_reference, "attempts": attempts}

    def fail(self, reason_code: str, detail: str, retryable: bool, attempts: int, message_id: str) -> None:
        self._failed(
            operation_id=self.operation_id, reason_code=reason_code, detail=detail, retryable=retryable,
            attempts=attempts, message_id=message_id,
        )

    @event("Failed")
    def _failed(self, operation_id: str, reason_code: str, detail: str, retryable: bool, attempts: int, message_id: str) -> None:
        self.status = "failed"
        self.parked = retryable
        self.outcome = {"reason_code": reason_code, "detail": detail, "retryable": retryable, "attempts": attempts}

    def body_sent(self) -> dict[str, Any] | None:
        """The body already sent under the current key: every retry of the call reuses it."""
        return self.sent_request if self.sent_key == self.idempotency_key else None

    def mark_sent(self, request: dict[str, Any] | None) -> None:
        """The call is out (status `sent`) with a body built from the seats confirmed when its turn
        came, other than the decided one; None: the decided body (marked only when the vendor is slow)."""
        if self.status == "paired":
            self.trigger_event(self.VendorCallSent, operation_id=self.operation_id, round=self.vendor_rounds, request=request)

    class VendorCallSent(Aggregate.Event):
        """Version 2 carries the body sent. Version 1 was recorded only for calls the vendor had
        not answered within a second, and the body then was the decided request."""

        class_version = 2
        operation_id: str
        round: int
        request: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["request"] = None

    @event(VendorCallSent)
    def _vendor_call_sent(self, operation_id: str, round: int, request: dict[str, Any] | None) -> None:
        self.status = "sent"
        self.sent_request = request or self.vendor_request
        self.sent_key = self.idempotency_key

    @property
    def awaiting_vendor(self) -> bool:
        return self.status in ("paired", "sent")

    # -- operators and timeouts ---------------------------------------------------------
    def cancel(self, requested_by: str, reason: str, message_id: str) -> None:
        if self.awaiting_vendor:
            raise AlreadySent(f"operation {self.operation_id}: the vendor call was already requested")
        if self.status in CLOSED and not self.parked:
            raise OperationClosed(f"operation {self.operation_id} is already {self.status}", status=self.status)
        self._cancelled(operation_id=self.operation_id, requested_by=requested_by, reason=reason, message_id=message_id)

    @event("Cancelled")
    def _cancelled(self, operation_id: str, requested_by: str, reason: str, message_id: str) -> None:
        self.status = "cancelled"
        self.parked = False
        self.outcome = {"requested_by": requested_by, "reason": reason}

    def retry(self, requested_by: str, reason: str, message_id: str) -> None:
        """An operator retries a vendor failure. A parked one (VENDOR_UNAVAILABLE) is sent again with
        the same request and key: the vendor may have done it. One the vendor refused
        (VENDOR_REJECTED), once its cause is fixed, is a new request under a new key derived from
        the operation and this retry, so the vendor does not answer from its memory of the refusal."""
        if self.vendor_request is None:
            raise OperationClosed(f"operation {self.operation_id} is {self.status}, not a vendor failure")
        if self.parked:
            self.request_vendor_call(self.vendor_request, requested_by, message_id, reason=reason,
                                     idempotency_key=self.idempotency_key)
        elif self.status == "failed" and (self.outcome or {}).get("reason_code") == "VENDOR_REJECTED":
            self.request_vendor_call(self.vendor_request, requested_by, message_id, reason=reason,
                                     idempotency_key=f"{self.operation_id}:retry-{self.vendor_rounds}")
        else:
            raise OperationClosed(f"operation {self.operation_id} is {self.status}: only a parked vendor failure "
                                  "or one the vendor refused (VENDOR_REJECTED) can be retried")

    def expire(self, now: datetime, timeout_s: float) -> None:
        if self.status != "waiting_for_pair":
            return
        waited = (now - self.first_recorded_at).total_seconds()
        missing = next(s for s in SIDES if s not in self.halves)
        self._expired(
            operation_id=self.operation_id,
            detail=f"no {missing} within {timeout_s:g}s of the first half (waited {waited:.0f}s)",
            waited_s=round(waited, 3),
            message_id=self.first_half_message_id,
        )

    @event("Expired")
    def _expired(self, operation_id: str, detail: str, waited_s: float, message_id: str) -> None:
        self.status = "expired"
        self.outcome = {"reason_code": "PAIRING_TIMEOUT", "detail": detail}

    @property
    def first_recorded_at(self) -> datetime:
        return min(h.recorded for h in self.halves.values())
