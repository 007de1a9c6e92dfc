"""Result payloads and dead letters (CONTRACT.md section 4)."""

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TransferCompleted(Result):
    operation_id: str
    source_subscription_id: str
    target_subscription_id: str
    seats: int
    vendor_reference: str


class TransferRejected(Result):
    operation_id: str
    order_id: str | None
    reason_code: str
    detail: str
    final: bool


class TransferFailed(Result):
    operation_id: str
    reason_code: Literal["PAIRING_TIMEOUT", "VENDOR_REJECTED", "VENDOR_UNAVAILABLE"]
    detail: str
    retryable: bool


class TransferCancelled(Result):
    operation_id: str
    requested_by: str


class MigratedProduct(Result):
    product_id: str
    subscription_id: str
    subscription_key: str


class BundleEntry(Result):
    product_id: str
    subscription_key: str


class RejectedProduct(Result):
    product_id: str
    reason_code: str
    detail: str
    eligible_from: date | None


class MigrationCompleted(Result):
    request_id: str
    customer_id: str
    migrated: list[MigratedProduct]
    bundle: list[BundleEntry]
    rejected: list[RejectedProduct]


class MigrationRejected(Result):
    request_id: str
    customer_id: str
    rejected: list[RejectedProduct]


class ScheduledProduct(Result):
    customer_id: str
    product_id: str
    on: date  # the day its renewal window opens: it is decided again then


class BulkAccepted(Result):
    bulk_id: str
    customers: list[str]  # every customer the bulk covers: as listed (once each), or sorted for all of a partner
    scheduled: list[ScheduledProduct]


class BulkCounts(Result):
    """Per customer and product: how each one ended."""

    migrated: int
    rejected: int
    cancelled: int  # still scheduled when the bulk was cancelled


class BulkFinished(Result):
    bulk_id: str
    status: Literal["finished", "cancelled"]
    counts: BulkCounts


RESULT_MODELS: dict[str, type[Result]] = {
    "transfer.completed": TransferCompleted,
    "transfer.rejected": TransferRejected,
    "transfer.failed": TransferFailed,
    "transfer.cancelled": TransferCancelled,
    "migration.completed": MigrationCompleted,
    "migration.rejected": MigrationRejected,
    "migration.bulk_accepted": BulkAccepted,
    "migration.bulk_finished": BulkFinished,
}
RESULTS: dict[str, TypeAdapter[Result]] = {t: TypeAdapter(m) for t, m in RESULT_MODELS.items()}

DeadLetterReason = Literal[
    "INVALID_JSON",
    "INVALID_ENVELOPE",
    "UNKNOWN_TYPE",
    "UNSUPPORTED_SCHEMA_VERSION",
    "INVALID_PAYLOAD",
    "UNKNOWN_REFERENCE",
]


# A message on the dead-letter topic (the stored record of one is `aggregates.inbox.DeadLetter`);
# its JSON Schema keeps the title upstream teams know, DeadLetter. (A docstring would enter the schema.)
class DeadLetterMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", title="DeadLetter")

    reason: DeadLetterReason
    error: str
    topic: str
    partition: int
    offset: int
    original: str  # base64 of the original bytes
