"""What came in: every seen message (for dedupe by message_id) and every dead letter."""

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class InboundMessage(Aggregate):
    """Exists once a message's envelope parsed: a second message with its id changes nothing."""

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
