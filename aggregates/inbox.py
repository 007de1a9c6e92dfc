"""What came in: every seen message (for dedupe by message_id) and every dead letter."""

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class InboundMessage(Aggregate):
    """Legacy, kept so old stores replay: before `coterm_seen_messages` (processor/store/recorders.py),
    one of these recorded each message whose envelope parsed. Nothing records new ones; the
    table, when created, copies their ids."""

    @staticmethod
    def create_id(message_id: str, **_: Any) -> UUID:
        return aggregate_id("messages", message_id)

    @event("Received")
    def __init__(self, message_id: str, type: str, topic: str, partition: int, offset: int, occurred_at: str) -> None:
        self.message_id = message_id
        self.type = type
        self.position = (topic, partition, offset)


class DeadLetter(Aggregate):
    """One per Kafka position, so a redelivered offset never yields a second dead letter."""

    @staticmethod
    def create_id(topic: str, partition: int, offset: int, **_: Any) -> UUID:
        return aggregate_id("deadletters", f"{topic}:{partition}:{offset}")

    @event("Recorded")
    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        reason: str,
        error: str,
        original: str,
        message_id: str | None,
        type: str | None,
    ) -> None:
        self.reason = reason
        self.error = error
        self.redriven: dict[str, Any] | None = None

    def redrive(self, by: str, why: str, new_message_id: str, corrected: bool) -> None:
        """Published again to the orders topic as `new_message_id`; once only, so never twice by accident."""
        if self.redriven is not None:
            raise AlreadyRedriven(f"already re-driven by {self.redriven['by']} as {self.redriven['new_message_id']}")
        self._redriven(by=by, why=why, new_message_id=new_message_id, corrected=corrected)

    @event("Redriven")
    def _redriven(self, by: str, why: str, new_message_id: str, corrected: bool) -> None:
        self.redriven = {"by": by, "why": why, "new_message_id": new_message_id, "corrected": corrected}


def recorded_dead_letter(events: Any, deadletter_id: str) -> "DeadLetter.Recorded | None":
    """A dead letter's first event, which alone holds the original bytes and position (`events`:
    the application's event store)."""
    first = next(iter(events.get(UUID(deadletter_id), lte=1)), None)
    return first if isinstance(first, DeadLetter.Recorded) else None


class AlreadyRedriven(ValueError):
    """A dead letter is re-driven once; the message says by whom and as which message."""
