"""Reason codes as exceptions (CONTRACT.md sections 2 and 3).

A `Refusal` is a business decision that becomes a `rejected` result; an `InvalidInput`
becomes a dead letter. Both carry the facts behind them so operators never guess.
"""

from datetime import date
from typing import Any, ClassVar


class DomainError(Exception):
    reason: ClassVar[str] = "DOMAIN_ERROR"

    def __init__(self, detail: str, *, eligible_from: date | None = None, **facts: Any) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail
        self.eligible_from = eligible_from
        self.facts = facts


class Refusal(DomainError):
    """A rule refused the order; it is answered, never dead-lettered."""


class InvalidInput(DomainError):
    """Reference data that cannot be applied: dead-lettered."""


class UnknownReference(InvalidInput):
    reason = "UNKNOWN_REFERENCE"


class ConflictingInput(InvalidInput):
    # e.g. a second purchase of an existing subscription_id: the payload breaks the contract's
    # promise that ids are new, so it is dead-lettered as INVALID_PAYLOAD with that detail.
    reason = "INVALID_PAYLOAD"


def _refusal(name: str, code: str) -> type[Refusal]:
    return type(name, (Refusal,), {"reason": code, "__module__": __name__})


# Migration to usage-based, in contract table order.
MIGRATION_REFUSALS = (
    CustomerUnknown := _refusal("CustomerUnknown", "CUSTOMER_UNKNOWN"),
    IncompleteCustomerData := _refusal("IncompleteCustomerData", "INCOMPLETE_CUSTOMER_DATA"),
    ConflictingRelationship := _refusal("ConflictingRelationship", "CONFLICTING_RELATIONSHIP"),
    AlreadyMigrated := _refusal("AlreadyMigrated", "ALREADY_MIGRATED"),
    ProductNotSupported := _refusal("ProductNotSupported", "PRODUCT_NOT_SUPPORTED"),
    CompanyManagedNotSupported := _refusal("CompanyManagedNotSupported", "COMPANY_MANAGED_NOT_SUPPORTED"),
    NoSubscription := _refusal("NoSubscription", "NO_SUBSCRIPTION"),
    DuplicateUsageSubscription := _refusal("DuplicateUsageSubscription", "DUPLICATE_USAGE_SUBSCRIPTION"),
    NotInRenewalWindow := _refusal("NotInRenewalWindow", "NOT_IN_RENEWAL_WINDOW"),
)

# Seat transfer, in contract table order.
TRANSFER_REFUSALS = (
    SubscriptionUnknown := _refusal("SubscriptionUnknown", "SUBSCRIPTION_UNKNOWN"),
    CustomerMismatch := _refusal("CustomerMismatch", "CUSTOMER_MISMATCH"),
    SeatCountMismatch := _refusal("SeatCountMismatch", "SEAT_COUNT_MISMATCH"),
    InsufficientSeats := _refusal("InsufficientSeats", "INSUFFICIENT_SEATS"),
    MultiResourcePlan := _refusal("MultiResourcePlan", "MULTI_RESOURCE_PLAN"),
    SameDayAsPurchase := _refusal("SameDayAsPurchase", "SAME_DAY_AS_PURCHASE"),
    SameDayAsUpsize := _refusal("SameDayAsUpsize", "SAME_DAY_AS_UPSIZE"),
    TermLengthMismatch := _refusal("TermLengthMismatch", "TERM_LENGTH_MISMATCH"),
    DuplicateHalf := _refusal("DuplicateHalf", "DUPLICATE_HALF"),
    OperationClosed := _refusal("OperationClosed", "OPERATION_CLOSED"),
    AlreadySent := _refusal("AlreadySent", "ALREADY_SENT"),
)

# Refusals that answer one message and leave the operation as it was (`final`: false).
NON_FINAL_REASONS = frozenset(r.reason for r in (DuplicateHalf, OperationClosed, AlreadySent))

# Each code is written once, above; these lists are derived from it.
MIGRATION_REASONS = tuple(r.reason for r in MIGRATION_REFUSALS)
TRANSFER_REASONS = tuple(r.reason for r in TRANSFER_REFUSALS)
FAILURE_REASONS = ("PAIRING_TIMEOUT", "VENDOR_REJECTED", "VENDOR_UNAVAILABLE")

class ActionRefused(DomainError):
    """A staff action that cannot be done now: the API answers 409 with its code; never a result on the wire."""


def _action_refused(name: str, code: str) -> type[ActionRefused]:
    return type(name, (ActionRefused,), {"reason": code, "__module__": __name__})


# Staff actions on seat drift (CONTRACT.md section 7).
DRIFT_REFUSALS = (
    NoDrift := _action_refused("NoDrift", "NO_DRIFT"),
    TransferInFlight := _action_refused("TransferInFlight", "TRANSFER_IN_FLIGHT"),
    DriftStale := _action_refused("DriftStale", "DRIFT_STALE"),
)
