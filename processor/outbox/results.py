"""Stored domain events -> outbound messages (results and dead letters, CONTRACT.md section 4)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from aggregates.application import plain
from aggregates.bulk import SCHEDULED, Bulk
from aggregates.inbox import DeadLetter
from aggregates.migration import Migration
from aggregates.transfer import Transfer
from contracts.envelope import ResultEnvelope
from contracts.outbound import RESULTS, DeadLetterMessage


@dataclass(frozen=True)
class Outbound:
    kind: str  # "result" or "deadletter"
    key: str | None
    value: bytes
    type: str
    cause: str | None = None  # the inbound message_id it answers: its trace is continued (`tracing`)
    headers: tuple[tuple[str, bytes], ...] = ()


def _cause(message_id: str) -> UUID:
    # Inbound ids are UUIDs by contract and staff actions make UUIDs; an event recorded with any
    # other id (a tool, an older version) must still be published, not stop the outbox for good.
    try:
        return UUID(message_id)
    except (ValueError, TypeError, AttributeError):
        return uuid5(NAMESPACE_URL, f"coterm:cause:{message_id}")


def _result(event: Any, type_: str, key: str, payload: dict[str, Any]) -> Outbound:
    cause = _cause(event.message_id)
    body = RESULTS[type_].validate_python(plain(payload))
    envelope = ResultEnvelope(
        # Derived from the cause and the event that answers it: a re-published copy has the same id.
        message_id=uuid5(cause, f"{type_}:{event.originator_id}:{event.originator_version}"),
        type=type_,
        occurred_at=event.timestamp,
        causation_id=cause,
        payload=RESULTS[type_].dump_python(body, mode="json"),
    )
    return Outbound("result", key, envelope.model_dump_json().encode(), type_, cause=event.message_id)


def _refused(e: Any) -> Outbound:
    return _result(e, "transfer.rejected", e.operation_id, {"operation_id": e.operation_id, "order_id": e.order_id,
                   "reason_code": e.reason_code, "detail": e.detail, "final": False})


def _rejected(e: Any) -> Outbound:
    return _result(e, "transfer.rejected", e.operation_id, {"operation_id": e.operation_id, "order_id": e.order_id,
                   "reason_code": e.reason_code, "detail": e.detail, "final": True})


def _completed(e: Any) -> Outbound:
    return _result(e, "transfer.completed", e.operation_id, {
        "operation_id": e.operation_id, "source_subscription_id": e.source_subscription_id,
        "target_subscription_id": e.target_subscription_id, "seats": e.seats, "vendor_reference": e.vendor_reference})


def _failed(e: Any) -> Outbound:
    return _result(e, "transfer.failed", e.operation_id, {"operation_id": e.operation_id, "reason_code": e.reason_code,
                   "detail": e.detail, "retryable": e.retryable})


def _expired(e: Any) -> Outbound:
    return _result(e, "transfer.failed", e.operation_id, {"operation_id": e.operation_id,
                   "reason_code": "PAIRING_TIMEOUT", "detail": e.detail, "retryable": False})


def _cancelled(e: Any) -> Outbound:
    return _result(e, "transfer.cancelled", e.operation_id, {"operation_id": e.operation_id, "requested_by": e.requested_by})


def _migration(e: Any) -> Outbound:
    if e.migrated:
        return _result(e, "migration.completed", e.request_id, {"request_id": e.request_id, "customer_id": e.customer_id,
                       "migrated": e.migrated, "bundle": e.bundle, "rejected": e.rejected})
    return _result(e, "migration.rejected", e.request_id, {"request_id": e.request_id, "customer_id": e.customer_id,
                   "rejected": e.rejected})


def _bulk_accepted(e: Any) -> Outbound:
    scheduled = [{"customer_id": d["customer_id"], "product_id": p, "on": o["on"]}
                 for d in e.decisions for p, o in d["products"].items() if o["outcome"] == SCHEDULED]
    return _result(e, "migration.bulk_accepted", e.bulk_id, {"bulk_id": e.bulk_id, "customers": e.customers,
                   "scheduled": scheduled})


def _bulk_finished(e: Any) -> Outbound:
    return _result(e, "migration.bulk_finished", e.bulk_id, {"bulk_id": e.bulk_id, "status": e.status,
                   "counts": e.counts})


def _dead_letter(e: Any) -> Outbound:
    letter = DeadLetterMessage(reason=e.reason, error=e.error, topic=e.topic, partition=e.partition,
                               offset=e.offset, original=e.original)
    return Outbound("deadletter", e.message_id, letter.model_dump_json().encode(), e.reason, cause=e.message_id)


OUTBOUND: dict[type, Callable[[Any], Outbound]] = {
    Transfer.MessageRefused: _refused,
    Transfer.Rejected: _rejected,
    Transfer.Completed: _completed,
    Transfer.Failed: _failed,
    Transfer.Expired: _expired,
    Transfer.Cancelled: _cancelled,
    Migration.Decided: _migration,
    Bulk.Accepted: _bulk_accepted,
    Bulk.Finished: _bulk_finished,
    DeadLetter.Recorded: _dead_letter,
}


def outbound_of(event: Any) -> Outbound | None:
    convert = OUTBOUND.get(type(event))
    return convert(event) if convert else None
