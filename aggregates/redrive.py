"""`coterm redrive`: publish chosen dead letters to the orders topic again, once each.

A re-driven message gets a new `message_id` (UUIDv5 of the dead letter: a crash between
publishing and recording re-drives under the same id, which the processor then ignores as a
duplicate) and a `redriven_from` note in its envelope (ignored by the contract's tolerant
reader). It is published first and then recorded on the dead letter with who and why; a dead
letter already re-driven is refused, so nothing is re-driven twice by accident.
"""

import base64
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from aggregates.application import Orders
from aggregates.inbox import AlreadyRedriven, DeadLetter, recorded_dead_letter

REDRIVE_NAMESPACE = UUID("9b1d3c8e-5a2f-4d6b-8c1e-7f0a2b3c4d5e")


@dataclass
class Outcome:
    deadletter_id: str
    new_message_id: str | None
    done: bool
    why: str  # what happened, or why not

    def as_dict(self) -> dict[str, Any]:
        return {"deadletter_id": self.deadletter_id, "new_message_id": self.new_message_id, "redriven": self.done,
                "detail": self.why}


def new_message_id(deadletter_id: str) -> str:
    return str(uuid5(REDRIVE_NAMESPACE, deadletter_id))


def message_for(recorded: DeadLetter.Recorded, deadletter_id: str, corrected: dict[str, Any] | None) -> dict[str, Any]:
    """The envelope to publish; ValueError says why there is none."""
    if corrected is not None:
        message = dict(corrected)
    else:
        try:
            message = json.loads(base64.b64decode(recorded.original))
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            raise ValueError("its original bytes are not a JSON object: give a corrected message with --message")
    message["message_id"] = new_message_id(deadletter_id)
    message["redriven_from"] = {"dead_letter_id": deadletter_id, "message_id": recorded.message_id,
                                "topic": recorded.topic, "partition": recorded.partition, "offset": recorded.offset,
                                "reason": recorded.reason}
    return message


def key_of(message: dict[str, Any]) -> bytes | None:
    payload = message.get("payload") if isinstance(message.get("payload"), dict) else {}
    # The contract's message key: the customer (a product for catalog.*, the partner for a bulk
    # migration). A bulk's cancel does not name its partner: it goes unkeyed, so publish it once
    # the bulk was accepted (before it, it would be dead-lettered UNKNOWN_REFERENCE).
    key = payload.get("customer_id") or payload.get("product_id") or payload.get("partner_id")
    return key.encode() if isinstance(key, str) else None


def redrive(app: Orders, publish: Any, ids: list[str], by: str, why: str,
            corrected: dict[str, Any] | None = None, dry_run: bool = False) -> list[Outcome]:
    """`publish(key, value)` sends one message and returns once the broker has it."""
    outcomes = []
    for deadletter_id in ids:
        recorded = recorded_dead_letter(app.events, deadletter_id)
        if recorded is None:
            outcomes.append(Outcome(deadletter_id, None, False, "no such dead letter in the store"))
            continue
        letter = app.repository.get(UUID(deadletter_id))
        if letter.redriven is not None:
            r = letter.redriven
            outcomes.append(Outcome(deadletter_id, r["new_message_id"], False,
                                    f"already re-driven by {r['by']} as {r['new_message_id']}: not again"))
            continue
        try:
            message = message_for(recorded, deadletter_id, corrected)
        except ValueError as error:
            outcomes.append(Outcome(deadletter_id, None, False, str(error)))
            continue
        if dry_run:
            outcomes.append(Outcome(deadletter_id, message["message_id"], False, "dry run: would re-drive"))
            continue
        publish(key_of(message), json.dumps(message).encode())

        def record(uow: Any, deadletter_id: str = deadletter_id, message: dict[str, Any] = message) -> None:
            uow.get(DeadLetter, UUID(deadletter_id)).redrive(by, why, message["message_id"], corrected is not None)

        try:
            app.decide(record)
        except AlreadyRedriven as error:  # someone else re-drove it meanwhile, under the same new id
            outcomes.append(Outcome(deadletter_id, message["message_id"], False, str(error)))
            continue
        outcomes.append(Outcome(deadletter_id, message["message_id"], True, f"re-driven by {by}: {why}"))
    return outcomes

