"""Stored events as the read models take them: decoded straight from the stored bytes, with dates
and times left as the ISO text they are stored as.

The library's mapper parses every date and time into an object (and its JSON decoder calls a
Python hook on every object), only for the projector to turn each back into the same text.
Here `msgspec` decodes the bytes, the two date transcodings are replaced by their stored text,
any other transcoding is decoded by the application's own transcoder, and the event's upcasters
run on the state as the library runs them. The result is an instance of the event's class (so
`isinstance` and attributes work) that the live projection, `coterm replay` and the bulk report
all project: one code path, so they cannot drift.
"""

import json
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper
from eventsourcing.utils import resolve_topic

from projections.doc_json import load

# Their stored text is what a read-model document shows (`DatetimeAsISO`, `DateAsISO`).
AS_TEXT = frozenset({"datetime_iso", "date_iso"})


class PlainEvents:
    """Decodes stored events of one application (its transcoder, cipher and compressor)."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        self.transcodings = getattr(mapper.transcoder, "names", {})
        self._classes: dict[str, tuple[type, int]] = {}  # topic -> (class, class_version)

    def event(self, topic: str, row_id: str, version: int, data: bytes) -> Any:
        """`row_id`: the aggregate id as 32 hex digits, which the read models key rows by."""
        known = self._classes.get(topic)
        if known is None:
            cls = resolve_topic(topic)
            known = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        cls, class_version = known
        if self.mapper.cipher:
            data = self.mapper.cipher.decrypt(data)
        if self.mapper.compressor:
            data = self.mapper.compressor.decompress(data)
        state: dict[str, Any] = load(data)
        # Every event's timestamp is a transcoding; most events have no other, and a walk through
        # every value costs as much as the decoding itself.
        typed = data.count(b'"_type_"')
        stamp = state.get("timestamp")
        if type(stamp) is dict and len(stamp) == 2 and stamp.get("_type_") == "datetime_iso":
            state["timestamp"] = stamp["_data_"]
            typed -= 1
        if typed:
            self._untype(state)
        state["row_id"] = row_id
        state["originator_version"] = version
        stored_version = state.pop("class_version", 1)
        while stored_version < class_version:
            getattr(cls, f"upcast_v{stored_version}_v{stored_version + 1}")(state)
            stored_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def rows(self, recorder: Any, start: int, limit: int, stop: int | None,
             topics: Sequence[str]) -> list[tuple[int, str, int, str, bytes]]:
        """(position, row id, version, topic, state) of the notifications from `start`: coterm's
        recorders select them as plain tuples (`select_rows`); any other recorder through the
        library's `select_notifications`."""
        select = getattr(recorder, "select_rows", None)
        if select is not None:
            return select(start, limit, stop, topics)  # type: ignore[no-any-return]
        return [(n.id, n.originator_id.hex, n.originator_version, n.topic, n.state)
                for n in recorder.select_notifications(start=start, limit=limit, stop=stop, topics=topics)]

    def _untype(self, value: dict[str, Any] | list[Any]) -> None:
        """In place: each `{"_type_": name, "_data_": data}` becomes its text (dates and times) or
        its decoded value (any other transcoding), the library's rule for what is a transcoding."""
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, dict):
                if len(item) == 2 and "_type_" in item and "_data_" in item:
                    value[key] = self._value(item["_type_"], item["_data_"])  # type: ignore[index]
                elif item:
                    self._untype(item)
            elif isinstance(item, list) and item:
                self._untype(item)

    def _value(self, name: str, data: Any) -> Any:
        if isinstance(data, dict | list):
            self._untype(data)  # the library decodes inner objects first
        if name in AS_TEXT:
            return data
        transcoding = self.transcodings.get(name)
        if transcoding is None:
            return self.mapper.transcoder.decode(json.dumps({"_type_": name, "_data_": data}).encode())
        return transcoding.decode(data)


def aggregate_events(app: Any, aggregate_id: UUID) -> Iterator[Any]:
    """One aggregate's whole history, decoded as the read models take it."""
    plain = PlainEvents(app.mapper)
    return (plain.event(s.topic, aggregate_id.hex, s.originator_version, s.state)
            for s in app.recorder.select_events(aggregate_id))
