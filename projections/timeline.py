"""Stored events as plain records: for timelines, `coterm history` and `coterm export`."""

from typing import Any

from aggregates.application import plain

_META = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def event_record(event: Any, position: int | None = None) -> dict[str, Any]:
    cls = type(event)
    aggregate = cls.__qualname__.split(".")[0]
    data = {k: v for k, v in vars(event).items() if k not in _META}
    record: dict[str, Any] = {
        "aggregate": aggregate,
        "aggregate_id": str(event.originator_id),
        "version": event.originator_version,
        "type": cls.__name__,
        "at": event.timestamp.isoformat(),
        "message_id": data.pop("message_id", None),
        "data": plain(data),
    }
    if position is not None:
        record = {"position": position, **record}
    return record


def aggregate_state(aggregate: Any) -> dict[str, Any]:
    """An aggregate's attributes as plain values (what it looked like)."""
    state = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
    state["version"] = aggregate.version
    state["modified_at"] = aggregate.modified_on.isoformat()
    return plain(state)
