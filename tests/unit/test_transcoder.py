"""Stored events decode to the same objects through coterm's msgspec decoder as through the
library's `json` one, and encode to the same bytes through its msgspec encoder as through the
library's (`aggregates.transcoder`): any value, with every transcoding coterm registers, the
awkward numbers, texts, keys and types included, and every event a real run stores."""

import enum
import io
import tempfile
from collections import namedtuple
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import transfer_commands
from aggregates.application import Orders
from aggregates.transcoder import MsgspecTranscoder, _NotAlike
from bench import workload
from processor.consume.inbox import Inbox
from processor.log_setup import configure_logging
from processor.store.opening import open_store


def transcoders() -> tuple[JSONTranscoder, MsgspecTranscoder]:
    library, ours = JSONTranscoder(), MsgspecTranscoder()
    for transcoder in (library, ours):
        Orders.register_transcodings(Orders.__new__(Orders), transcoder)  # the application's own registrations
    return library, ours


LIBRARY, OURS = transcoders()

scalars = (st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text()
           | st.uuids() | st.dates() | st.decimals(allow_nan=False)
           | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))])))
# Keys that look like a transcoding's, beside any text: a dict with them and more keys is no transcoding.
keys = st.text() | st.sampled_from(["_type_", "_data_", "timestamp"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=30)


def same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (NaN equal to NaN, True not 1)."""
    return repr(a) == repr(b)


def outcome(transcoder: JSONTranscoder, data: bytes) -> str:
    """What decoding gives, or the error it raises (a dict shaped like a transcoding of a name
    nobody registered fails both)."""
    try:
        return repr(transcoder.decode(data))
    except Exception as error:  # noqa: BLE001 - the error is the outcome compared
        return f"raises {type(error).__name__}"


@settings(max_examples=500)
@given(st.dictionaries(keys, values, max_size=6))
def test_any_value_the_library_writes_decodes_alike(state: dict) -> None:
    data = LIBRARY.encode(state)
    assert outcome(OURS, data) == outcome(LIBRARY, data)


def test_the_awkward_cases_decode_alike() -> None:
    for state in [{"x": float("nan"), "y": [float("inf"), -float("inf")]}, {"n": 2**70, "m": -(2**64) - 1},
                  {"f": 1e308, "g": 5e-324, "z": -0.0}, {"_type_": "not registered as a key", "other": 1},
                  {"t": "\"_type_\" inside a text", "u": "snowman ☃, NUL \x00, DEL \x7f"},
                  {"nested": [{"when": date(2026, 3, 3)}, [UUID(int=7)]]}, []]:
        data = LIBRARY.encode(state)
        assert same(OURS.decode(data), LIBRARY.decode(data)), state


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


# What msgspec would write otherwise than `json`, beside what both write alike.
odd_scalars = (st.sampled_from([1e16, 1e-7, -2.6692135378105e-05, float("nan"), float("inf"), Level.HIGH, Text("t"),
                                Colour.RED, 2**70, b"bytes", {1, 2}]) | st.floats())
odd_values = st.recursive(scalars | odd_scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.lists(inner, max_size=3).map(tuple)
                          | st.dictionaries(keys | st.integers() | st.booleans() | st.none(), inner, max_size=4),
                          max_leaves=30)


def written(transcoder: JSONTranscoder, value: object) -> bytes | str:
    """The bytes encoding writes, or the error it raises (an unregistered type fails both)."""
    try:
        return transcoder.encode(value)
    except Exception as error:  # noqa: BLE001 - the error is the outcome compared
        return f"raises {type(error).__name__}"


@settings(max_examples=500)
@given(st.dictionaries(keys, odd_values, max_size=6))
def test_any_value_encodes_to_the_same_bytes(state: dict) -> None:
    assert written(OURS, state) == written(LIBRARY, state)


def test_the_awkward_cases_encode_alike() -> None:
    for state in [{"x": float("nan"), "y": [float("inf"), -float("inf")]}, {"n": 2**70, "m": -(2**64) - 1},
                  {"f": 1e308, "g": 5e-324, "z": -0.0, "h": 0.1, "e": 1e16}, {1: "int key", None: "none key"}, {True: "bool key"},
                  {"t": "\"_type_\" inside a text", "u": "snowman ☃, NUL \x00, DEL \x7f, \u2028, 😀"},
                  {"surrogate": "\ud800"}, {"enum": Colour.RED, "int enum": Level.HIGH, "str subclass": Text("x")},
                  {"nested": [{"when": date(2026, 3, 3)}, (UUID(int=7), Decimal("1.10"))]}, [], {"set": {1}}]:
        assert written(OURS, state) == written(LIBRARY, state), state


def test_what_msgspec_writes_alike_takes_no_detour() -> None:
    """Plain values and the registered types are written by msgspec, not handed back to the
    library (which would be right, and no faster)."""
    state = {"timestamp": datetime(2026, 3, 3, 9, 30, tzinfo=UTC), "id": UUID(int=5), "on": date(2026, 3, 3),
             "price": Decimal("9.99"), "seats": [1, 2.5, None, True], "request": {"plan": "P", "ids": ("a", "b")}}
    assert OURS._transcoded(state)["timestamp"] == {"_type_": "datetime_iso", "_data_": "2026-03-03T09:30:00+00:00"}
    for odd in ({"f": 1e16}, {1: "x"}, {"e": Colour.RED}):
        try:
            OURS._transcoded(odd)
        except _NotAlike:
            continue
        raise AssertionError(f"{odd} would be written by msgspec")


def test_every_event_a_run_stores_decodes_and_encodes_alike() -> None:
    configure_logging(io.StringIO())
    Record = namedtuple("Record", "offset value")
    app = open_store(tempfile.mkdtemp() + "/events.sqlite")
    try:
        inbox = Inbox(app)
        messages = [*workload.reference_data("tc", 10, 3), *workload.transfers("tc", 40, 10, 3)]
        inbox.process("orders", 0, [Record(i, m.value) for i, m in enumerate(messages)])
        uow = app.unit_of_work()
        for op in sorted({m.operation_id for m in messages if m.operation_id}):
            transfer_commands.record_vendor_success(uow, op, f"V-{op}", 1, 1)
        app.commit(uow)
        stored = app.process_recorder.select_notifications(start=1, limit=10_000)
        assert isinstance(app.mapper.transcoder, MsgspecTranscoder) and len(stored) > 100
        for notification in stored:
            assert same(OURS.decode(notification.state), LIBRARY.decode(notification.state)), notification.topic
            # Written by coterm's encoder: the bytes the library's would have written, by msgspec's way.
            state = LIBRARY.decode(notification.state)
            assert notification.state == LIBRARY.encode(state), notification.topic
            OURS._transcoded(state)
    finally:
        app.close()
