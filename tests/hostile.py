"""Hostile order messages: every one breaks the contract (or repeats a message id), each in one
of the ways a broken or malicious upstream would. One generator serves the hypothesis
property (which explores and shrinks the seeds) and the 10,000-message stream (seeded)."""

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.harness import envelope


@dataclass
class Hostile:
    kind: str
    value: bytes | None
    key: bytes | None
    message_id: str | None = None  # set when the envelope parses: its id is deduplicated
    duplicate_of: str | None = None  # reuses a valid message's id with another payload: ignored, not dead-lettered


def _base(rnd: random.Random, n: int) -> dict[str, Any]:
    """A valid transfer half, before it is broken."""
    op = f"hostile-{n}"
    if rnd.random() < 0.5:
        payload = {"operation_id": op, "order_id": f"{op}-down", "customer_id": "c1", "subscription_id": "c1-s1",
                   "seats": 1, "requested_by": "fuzz"}
        return envelope("transfer.downgrade_ordered", payload)
    payload = {"operation_id": op, "order_id": f"{op}-up", "customer_id": "c1", "seats": 1, "requested_by": "fuzz",
               "target": {"kind": "new_subscription", "new_subscription_id": f"{op}-new", "product_id": "p2",
                          "plan_id": "plan-x", "term_months": 12}}
    return envelope("transfer.upgrade_ordered", payload)


ENVELOPE_FIELDS = ["message_id", "type", "schema_version", "occurred_at", "source", "payload"]
PAYLOAD_IDS = ["operation_id", "order_id", "customer_id", "requested_by"]
WRONG_TYPES: list[Any] = [None, 7, -1, 3.5, True, "3", [], {}, [1, "a"], {"x": None}]
CONTROL = ["\x00", "\x01", "\x07", "\x1b[31m", "\x7f", "\n", "\r\n", "\t"]
UNICODE = ["é", "→", "\u202e", "😀", "\ufeff", "ｆｕｌｌ", "\u0301", "𝔘"]
BAD_DATES = ["2026-13-45T10:00:00Z", "yesterday", "2026-11-01T10:00:00", "", "2026-11-01", "0000-01-01T00:00:00Z",
             "9999-12-31T23:59:59-14:00", "2026-02-30T10:00:00Z", "2026-11-01T25:61:00Z", "1e9", "null"]


def _encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")


def drop_field(rnd: random.Random, m: dict[str, Any]) -> bytes:
    if rnd.random() < 0.4:
        del m[rnd.choice(ENVELOPE_FIELDS[1:])]  # an envelope field other than the id (kept: it is deduplicated)
    else:
        del m["payload"][rnd.choice([*PAYLOAD_IDS, "seats"])]
    return _encode(m)


def retype_field(rnd: random.Random, m: dict[str, Any]) -> bytes:
    field = rnd.choice([*PAYLOAD_IDS, "seats", "payload", "type", "schema_version"])
    wrong = rnd.choice([w for w in WRONG_TYPES if not (field == "seats" and w == 7)
                        and not (field in PAYLOAD_IDS and isinstance(w, str))])
    if field in ("payload", "type", "schema_version"):
        m[field] = wrong if not (field == "schema_version" and wrong == 7) else "1"
        if field == "payload" and isinstance(wrong, dict):
            m[field] = {"unexpected": True}
    else:
        m["payload"][field] = wrong
    return _encode(m)


def huge_string(rnd: random.Random, m: dict[str, Any]) -> bytes:
    field = rnd.choice(PAYLOAD_IDS)
    if rnd.random() < 0.003:
        m["payload"][field] = "a" * 1_000_000  # a 1 MB string: the message stays under Kafka's 1 MiB default
    else:
        m["payload"][field] = rnd.choice("abc→😀") * rnd.choice([201, 2_000, 5_000])  # ids hold at most 200
    return _encode(m)


def deep_nesting(rnd: random.Random, m: dict[str, Any]) -> bytes:
    depth = rnd.choice([300, 1_000, 5_000]) if rnd.random() < 0.99 else 50_000
    text = _encode(m)
    nested = ("[" * depth + "]" * depth) if rnd.random() < 0.5 else ('{"a":' * depth + "1" + "}" * depth)
    return text.replace(b'"requested_by": "fuzz"', b'"requested_by": ' + nested.encode())


def control_chars(rnd: random.Random, m: dict[str, Any]) -> bytes:
    field = rnd.choice(PAYLOAD_IDS)
    m["payload"][field] = rnd.choice(UNICODE) + m["payload"][field] + rnd.choice(CONTROL) + rnd.choice(UNICODE)
    return _encode(m)


def invalid_date(rnd: random.Random, m: dict[str, Any]) -> bytes:
    m["occurred_at"] = rnd.choice(BAD_DATES)
    return _encode(m)


def bad_number(rnd: random.Random, m: dict[str, Any]) -> bytes:
    if rnd.random() < 0.8:
        m["payload"]["seats"] = rnd.choice([0, -1, -(10 ** rnd.randint(1, 40)), 10 ** rnd.randint(7, 400), 2**63])
    else:
        m["schema_version"] = rnd.choice([0, 2, -1, 10**30])
    return _encode(m)


def random_bytes(rnd: random.Random, m: dict[str, Any]) -> bytes:
    return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))


def empty_value(rnd: random.Random, m: dict[str, Any]) -> bytes:
    choice = rnd.randint(0, 4)
    if choice == 0:
        m["payload"][rnd.choice(PAYLOAD_IDS)] = ""
    elif choice == 1:
        m["payload"] = {}
    elif choice == 2:
        m["payload"] = []
    elif choice == 3:
        return b""
    else:
        return rnd.choice([b"{}", b"null", b"[]", b'""', b"0", b"   "])
    return _encode(m)


def unknown_type(rnd: random.Random, m: dict[str, Any]) -> bytes:
    m["type"] = rnd.choice(["transfer.sideways_ordered", "TRANSFER.DOWNGRADE_ORDERED", "x" * 200, "a\x00b", "é"])
    return _encode(m)


def bad_encoding(rnd: random.Random, m: dict[str, Any]) -> bytes:
    text = json.dumps(m, ensure_ascii=False)
    if rnd.random() < 0.5:
        return text.replace("fuzz", "fuzzé").encode("latin-1", "replace")  # not UTF-8
    return text.replace('"fuzz"', '"\\ud800"').encode()  # a lone surrogate escape


MUTATIONS: dict[str, Callable[[random.Random, dict[str, Any]], bytes]] = {
    f.__name__: f for f in (drop_field, retype_field, huge_string, deep_nesting, control_chars, invalid_date,
                            bad_number, random_bytes, empty_value, unknown_type, bad_encoding)
}


def _key(rnd: random.Random) -> bytes | None:
    return rnd.choice([None, b"c1", b"", "é😀".encode(), bytes(rnd.getrandbits(8) for _ in range(8))])


def hostile(rnd: random.Random, n: int, valid_ids: list[str] | None = None) -> Hostile:
    """The n-th hostile message; with `valid_ids`, some reuse one of them with another payload."""
    m = _base(rnd, n)
    m["message_id"] = str(uuid.UUID(int=rnd.getrandbits(128), version=4))  # the seed decides everything
    if valid_ids and rnd.random() < 0.03:
        m["message_id"] = rnd.choice(valid_ids)
        m["payload"]["seats"] = 99  # another payload under the same id
        return Hostile("duplicate_id", _encode(m), _key(rnd), duplicate_of=m["message_id"])
    if rnd.random() < 0.01:
        return Hostile("tombstone", None, _key(rnd) or b"c1")  # Kafka refuses a record with neither
    kind = rnd.choice(sorted(MUTATIONS))
    message_id = m["message_id"]
    value = MUTATIONS[kind](rnd, m)
    return Hostile(kind, value, _key(rnd), message_id=message_id)


def stream(seed: int, count: int, valid_ids: list[str] | None = None) -> list[Hostile]:
    rnd = random.Random(seed)
    return [hostile(rnd, n, valid_ids) for n in range(count)]


@st.composite
def hostile_messages(draw: st.DrawFn) -> Hostile:
    rnd = draw(st.randoms(use_true_random=False))
    kind = draw(st.sampled_from(sorted(MUTATIONS)))
    m = _base(rnd, draw(st.integers(0, 10**6)))
    message_id = m["message_id"] = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    return Hostile(kind, MUTATIONS[kind](rnd, m), _key(rnd), message_id=message_id)
