"""Starting work from coterm: the orders a person places through the API and the dashboard.

Each request becomes the contract's own messages (CONTRACT.md section 2 and 5), checked with the
contract's parser before anything is produced, recorded as a `Submission` under the caller's
idempotency key, then published to the orders topic like any upstream order. The processor
then decides them exactly as it decides messages from the portals.
"""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from aggregates.application import Orders, UnitOfWork
from aggregates.submission import KeyReused, Submission, derived_id, digest
from contracts.parsing import Rejection, parse_message

SOURCE = "coterm-api"  # the envelope's `source`: orders a person placed through coterm itself


class OrdersUnavailable(Exception):
    """The orders topic cannot be reached (or was never configured): nothing was published."""


class OrdersOut(Protocol):
    def unavailable(self) -> str | None:
        """None when orders can be published; else why not, in one line."""

    def publish(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Produce in order and return once the broker has every one; raises OrdersUnavailable."""


class NoBroker:
    """`coterm serve` without COTERM_KAFKA_BOOTSTRAP: it reads and acts on the store, but places no orders."""

    def unavailable(self) -> str:
        return "COTERM_KAFKA_BOOTSTRAP is unset: this coterm serve cannot place orders (reads, cancel and retry still work)"

    def publish(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        raise OrdersUnavailable(self.unavailable())


class BadOrder(Exception):
    """The request cannot become a valid message; `detail` says which field and why."""


# -- request bodies: only what a person chooses; ids, `requested_by` and dates coterm fills in ----
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MigrationOrder(_Body):
    customer_id: str = Field(description="the customer to migrate")
    product_ids: list[str] = Field(description="products to migrate (the window's selection)")
    request_id: str | None = Field(None, description="default: derived from the idempotency key")


class NewPlan(_Body):
    kind: Literal["new_subscription"]
    plan_id: str
    new_subscription_id: str | None = Field(None, description="default: derived from the idempotency key")
    term_months: int | None = Field(None, description="default: the source's term")
    product_id: str | None = Field(None, description="default: the source's product")


class ExistingTarget(_Body):
    kind: Literal["existing_subscription"]
    subscription_id: str


class TransferOrder(_Body):
    subscription_id: str = Field(description="the source subscription")
    seats: int = Field(description="seats to move")
    target: NewPlan | ExistingTarget = Field(discriminator="kind")
    customer_id: str | None = Field(None, description="default: the source's customer")
    operation_id: str | None = Field(None, description="default: derived from the idempotency key")


class BulkOrder(_Body):
    partner_id: str | None = Field(None, description="the partner; a partner's user may leave it out (its own)")
    product_ids: list[str]
    customer_ids: list[str] | None = Field(None, description="these customers, or")
    all_customers_of_partner: bool | None = Field(None, description="true: every customer of the partner")
    bulk_id: str | None = Field(None, description="default: derived from the idempotency key")


class BulkCancelOrder(_Body):
    reason: str = Field(description="why: recorded on the bulk")


def envelope(message_id: str, type_: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {"message_id": message_id, "type": type_, "schema_version": 1,
            "occurred_at": at.isoformat().replace("+00:00", "Z"), "source": SOURCE, "payload": payload}


def checked(message: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The message as it will be published, or BadOrder with the contract parser's own words."""
    value = json.dumps(message, separators=(",", ":"))
    parsed = parse_message(value.encode())
    if isinstance(parsed, Rejection):
        raise BadOrder(f"{message['type']}: {parsed.reason}: {parsed.detail}")
    return {"key": key, "value": value}


Build = Callable[[Callable[[str], str]], tuple[list[dict[str, Any]], dict[str, Any]]]


def place(app: Orders, orders: OrdersOut, by: str, key: str, kind: str, request: dict[str, Any],
          build: Build, tenant: str | None = None) -> tuple[dict[str, Any], bool]:
    """Record the submission (once per user and key) and publish its messages; returns the
    answer and whether this was a repeat of the key. `build(derive)` makes the checked messages
    and the answer, deriving every new id from the key. In this order: a reused key (422), a bad
    order (400, BadOrder from `build`), no broker (503), so a caller learns first what it can fix."""
    wanted = digest(kind, request)
    submission_id = Submission.create_id(by, key)
    found = app.unit_of_work().get(Submission, submission_id)
    if found is not None and not found.same(kind, wanted):
        raise KeyReused(found.kind)
    built = None if found is not None else build(lambda name: derived_id(by, key, name))
    why_not = orders.unavailable()
    if why_not is not None:
        raise OrdersUnavailable(why_not)

    def record(uow: UnitOfWork) -> tuple[Submission, bool]:
        existing = uow.get(Submission, submission_id)
        if existing is not None:  # found above, or recorded meanwhile by another `coterm serve`
            if not existing.same(kind, wanted):
                raise KeyReused(existing.kind)
            return existing, True
        assert built is not None
        messages, answer = built
        return uow.add(Submission(by=by, key=key, kind=kind, digest=wanted, messages=messages, answer=answer,
                                  tenant=tenant)), False

    submission, repeat = app.decide(record)
    if not submission.published:
        # Also when a repeat finds it recorded but not marked published: a crash may have come between
        # the two halves. The processor ignores an id it has seen, so publishing again never places a
        # second pair; the mark only spares the topic a copy when the first answer was lost.
        orders.publish([(m["key"].encode() if m["key"] else None, m["value"].encode()) for m in submission.messages])
        app.decide(_mark_published(submission.id))
    return submission.answer, repeat


def _mark_published(submission_id: Any) -> Callable[[UnitOfWork], None]:
    def mark(uow: UnitOfWork) -> None:
        found = uow.get(Submission, submission_id)
        if found is not None and not found.published:
            found.mark_published()
    return mark
