"""Raw Kafka bytes -> a typed inbound message or a structured rejection. Never raises."""

from dataclasses import dataclass

from pydantic import ValidationError

from contracts.envelope import Envelope
from contracts.inbound import PAYLOADS, Payload

SUPPORTED_SCHEMA_VERSION = 1
_MAX_DETAIL = 1000


@dataclass(frozen=True)
class Inbound:
    envelope: Envelope
    payload: Payload


@dataclass(frozen=True)
class Rejection:
    """Why a message cannot be processed; `envelope` is set when the envelope parsed."""

    reason: str
    detail: str
    envelope: Envelope | None = None


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "message"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)[:_MAX_DETAIL]


def _not_json(error: ValidationError) -> bool:
    # json_invalid: not JSON (or not UTF-8); model_type at the top: JSON but not an object.
    return any(e["type"] == "json_invalid" or (e["type"] == "model_type" and not e["loc"]) for e in error.errors())


def parse_message(raw: bytes | None) -> Inbound | Rejection:
    if raw is None:
        return Rejection("INVALID_JSON", "message has no value (tombstone)")
    try:
        envelope = Envelope.model_validate_json(raw)
    except ValidationError as error:
        if _not_json(error):
            return Rejection("INVALID_JSON", _describe(error) or "not a UTF-8 JSON object")
        return Rejection("INVALID_ENVELOPE", _describe(error))
    except (ValueError, TypeError, RecursionError) as error:  # pathological input deep in the parser
        return Rejection("INVALID_JSON", str(error)[:_MAX_DETAIL])
    adapter = PAYLOADS.get(envelope.type)
    if adapter is None:
        return Rejection("UNKNOWN_TYPE", f"type {envelope.type[:100]!r} is not in the contract", envelope)
    if envelope.schema_version != SUPPORTED_SCHEMA_VERSION:
        return Rejection(
            "UNSUPPORTED_SCHEMA_VERSION",
            f"schema_version {envelope.schema_version} is not supported (only {SUPPORTED_SCHEMA_VERSION})",
            envelope,
        )
    if not isinstance(envelope.payload, dict):
        return Rejection("INVALID_PAYLOAD", "payload: must be a JSON object", envelope)
    try:
        payload = adapter.validate_python(envelope.payload)
    except ValidationError as error:
        return Rejection("INVALID_PAYLOAD", _describe(error), envelope)
    return Inbound(envelope, payload)
