"""JSON for read-model documents: msgspec, writing the bytes `json.dumps` always wrote.

`replay --verify` compares a fresh replay with read models written by earlier versions, byte
for byte, so documents keep the bytes of `json.dumps(doc, sort_keys=True, separators=(",", ":"))`.
msgspec writes those bytes five times faster, except for three things it writes otherwise:
text beyond ASCII and DEL (json escapes them; such a document takes the json path, found with
two C scans), and floats with an exponent ("1e16" for json's "1e+16"). Floats reach documents
only through `decode` (stored events, stored rows), which makes them `JsonFloat`s, and those
are written with json's own `float.__repr__`. A float a projector computes itself would be
written msgspec's way: projectors compute integers (tests/unit/test_dump.py).
"""

import json
from collections.abc import Mapping
from typing import Any

import msgspec


class JsonFloat(float):
    """A float read from JSON, written back as json writes it."""


def _as_json_writes(value: Any) -> Any:
    if isinstance(value, JsonFloat):
        return msgspec.Raw(float.__repr__(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")


_encode = msgspec.json.Encoder(enc_hook=_as_json_writes, order="sorted").encode
decode = msgspec.json.Decoder(float_hook=JsonFloat).decode


def dump(doc: Mapping[str, Any]) -> str:
    out = _encode(doc)
    if out.isascii() and b"\x7f" not in out:
        return out.decode()
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def load(text: str | bytes) -> Any:
    """A stored document or event; what msgspec refuses and Python's json reads (NaN, Infinity:
    never in coterm's own documents) is read by json."""
    try:
        return decode(text)
    except msgspec.DecodeError:
        return json.loads(text)
