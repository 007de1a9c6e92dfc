"""Stored events decoded by msgspec: the library's `JSONTranscoder`, its decoding faster.

The library decodes an event's JSON with Python's `json` and an `object_hook` that it calls,
in Python, on every object of the document. The outbox's process rebuilds aggregates and reads
every transfer's events that way; the decoding was 15-20% of its main thread at 200
transfers/s (py-spy). Here msgspec decodes the bytes into the same dicts, lists, strings and
numbers, and the library's own hook then runs on the objects that can be transcodings, inner
ones first as `json` calls it. What msgspec refuses (NaN, Infinity, a number out of a float's
range: `json` writes and reads them) is decoded by the library's way.

Encoding too: the library's `json` encoder calls its `default` hook, in Python, for every
UUID, date and time (each event's timestamp at least), and was 7-9% of the consumer's and the
outbox's CPU in the hot path. Here a walk puts the library's `{"_type_", "_data_"}` objects in
their place and msgspec writes the JSON: the same bytes, in 60% of the time (12.3 against
20.5 µs an event, the events of a run). Where msgspec would write otherwise than `json` (a
float with an exponent: "1e16", not "1e+16"; NaN; a key that is not text; a type neither
plain nor registered, a str or int subclass included) the event is written the library's
way, so stored bytes never change (tests/unit/test_transcoder.py: both encoders and both
decoders agree).
"""

import math
from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_PLAIN = frozenset((str, int, bool, type(None)))  # written alike by msgspec and `json`


class _NotAlike(Exception):
    """A value msgspec would write otherwise than `json` does."""


class MsgspecTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            return _encode(self._transcoded(obj))
        except Exception:  # noqa: BLE001 - whatever msgspec would not write as `json` does, the library writes (or refuses)
            return super().encode(obj)

    def _transcoded(self, value: Any) -> Any:
        """`value` with each registered type replaced by the library's transcoding of it (a copy
        of each container holding one; the others as they are). Raises `_NotAlike` where msgspec
        would write other bytes than `json`."""
        kind = type(value)
        if kind is dict:
            copy = None
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotAlike  # `json` writes 1 as "1", True as "true": msgspec does not
                if type(item) in _PLAIN:
                    continue
                new = self._transcoded(item)
                if new is not item:
                    if copy is None:
                        copy = dict(value)
                    copy[key] = new
            return value if copy is None else copy
        if kind is list or kind is tuple:  # a tuple is written as a list by both
            return [item if type(item) in _PLAIN else self._transcoded(item) for item in value]
        if kind is float:
            if not math.isfinite(value) or "e" in repr(value):  # NaN, Infinity, 1e+16: `json`'s spelling
                raise _NotAlike
            return value
        if kind in _PLAIN:
            return value
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _NotAlike  # unregistered, or a subclass of a plain type (an enum): the library decides
        return {"_type_": transcoding.name, "_data_": self._transcoded(transcoding.encode(value))}

    def decode(self, data: bytes) -> Any:
        try:
            value = _decode(data)
        except msgspec.DecodeError:
            return super().decode(data)
        # A transcoded value is an object with a "_type_" key, so the bytes say how many there
        # can be. Most events hold one, their timestamp: then no other object needs the hook.
        typed = data.count(b'"_type_"')
        if not typed or type(value) not in (dict, list):
            return value
        if typed == 1 and type(value) is dict:
            stamp = value.get("timestamp")
            if type(stamp) is dict and "_type_" in stamp:
                value["timestamp"] = self._decode_obj(stamp)
                return value
        return self._hooked(value)

    def _hooked(self, value: Any) -> Any:
        """`value` with the library's hook run on each object, inner ones first."""
        if type(value) is dict:
            for key, item in value.items():
                if type(item) in (dict, list):
                    value[key] = self._hooked(item)
            return self._decode_obj(value)
        for index, item in enumerate(value):
            if type(item) in (dict, list):
                value[index] = self._hooked(item)
        return value
