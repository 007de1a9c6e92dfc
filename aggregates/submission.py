"""Orders placed by a person through the API (`POST /api/migrations`, `/transfers`, `/bulk`, ...).

A submission is recorded under its idempotency key *before* its messages are published, with
the exact bytes it will publish. The same key (same user) asked again with the same request
answers as the first time and, if they may not all have reached the broker, publishes those bytes again: a double click or a POST retried
after a timeout places the orders once (the processor ignores a `message_id` it has seen), and a
half published before a crash is published again under its id, never as a second pair. The same
key with another request is refused, never silently answered with the first one's ids. Once the
broker has taken every message the submission is marked published, and a repeat publishes nothing.
"""

import hashlib
import json
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from aggregates.ids import NAMESPACE, aggregate_id


def digest(kind: str, request: dict[str, Any]) -> str:
    """What a repeat of the key must ask again to be the same submission."""
    return hashlib.sha256(json.dumps([kind, request], sort_keys=True, default=str).encode()).hexdigest()


def derived_id(by: str, key: str, name: str) -> str:
    """An id (message, operation, order, ...) that the same user and key always derive alike."""
    return str(uuid5(NAMESPACE, f"/submissions/{by}\n{key}/{name}"))


class KeyReused(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(f"this Idempotency-Key was already used for another request ({kind}); "
                         "use a new key for a new request")


class Submission(Aggregate):
    @staticmethod
    def create_id(by: str, key: str, **_: Any) -> UUID:
        return aggregate_id("submissions", f"{by}\n{key}")

    class Placed(Aggregate.Created):
        # Version 2 added `tenant`: who placed it, when a partner's or distributor's user did.
        class_version = 2
        by: str
        key: str
        kind: str
        digest: str
        messages: list[dict[str, Any]]
        answer: dict[str, Any]
        tenant: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["tenant"] = None  # before tenants, only provider staff placed orders

    @event(Placed)
    def __init__(self, by: str, key: str, kind: str, digest: str, messages: list[dict[str, Any]],
                 answer: dict[str, Any], tenant: str | None = None) -> None:
        """`messages`: [{"key": partition key or None, "value": the envelope's JSON text}], in order;
        `tenant`: "partner P" or "distributor D" when such a user placed them (the audit trail's)."""
        self.by = by
        self.tenant = tenant
        self.kind = kind
        self.digest = digest
        self.messages = messages
        self.answer = answer
        self.published = False

    @event("Published")
    def mark_published(self) -> None:
        """The broker has every message: a repeat of the key publishes nothing again."""
        self.published = True

    def same(self, kind: str, request_digest: str) -> bool:
        return self.kind == kind and self.digest == request_digest
