"""Stored events decode to the same objects through coterm's msgspec decoder as through the
library's `json` one (`aggregates.transcoder`): any value the library's encoder writes, with
every transcoding coterm registers, the awkward numbers and texts included, and every event
a real run stores."""

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
from aggregates.transcoder import MsgspecTranscoder
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


def test_every_event_a_run_stores_decodes_alike() -> None:
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
    finally:
        app.close()
