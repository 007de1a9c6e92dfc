"""Stored events decoded by msgspec: the library's `JSONTranscoder`, its decoding faster.

The library decodes an event's JSON with Python's `json` and an `object_hook` that it calls,
in Python, on every object of the document. The outbox's process rebuilds aggregates and reads
every transfer's events that way; the decoding was 15-20% of its main thread at 200
transfers/s (py-spy). Here msgspec decodes the bytes into the same dicts, lists, strings and
numbers, and the library's own hook then runs on the objects that can be transcodings, inner
ones first as `json` calls it. What msgspec refuses (NaN, Infinity, a number out of a float's
range: `json` writes and reads them) is decoded by the library's way. Encoding is the
library's, so stored bytes do not change (tests/unit/test_transcoder.py: both decoders agree).
"""

from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder

_decode = msgspec.json.decode


class MsgspecTranscoder(JSONTranscoder):
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
