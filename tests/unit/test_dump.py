"""Read-model documents keep the bytes `json.dumps` gave them, whichever encoder writes them:
`replay --verify` compares a fresh replay with read models written by earlier versions.
Documents are made of values read from JSON (stored events, stored rows), so each case goes
through `load` first, as in the projection."""

import json
from datetime import UTC, datetime
from uuid import UUID

import msgspec
from eventsourcing.application import Application
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.plain_events import PlainEvents
from projections.doc_json import dump, load


def as_before(doc: object) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


# NaN and infinities never reach a document: no contract field is a float.
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text()
docs = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=30)


@settings(max_examples=500)
@given(st.dictionaries(st.text(), docs, max_size=6))
def test_any_document_is_written_as_json_dumps_writes_it(doc: dict[str, object]) -> None:
    read = load(as_before(doc))
    assert dump(read) == as_before(doc) == as_before(read)


def test_the_cases_where_the_fast_encoder_writes_otherwise() -> None:
    for doc in ({"n": 1e16}, {"n": [1e-7]}, {"t": "caf\u00e9"}, {"t": "\x7f"}, {"\u00e9": 1}, {"t": "\b\f\x01"},
                {"n": -2.5e-300}, {"ids": ["12:3e4", "3e"]}):
        assert dump(load(as_before(doc))) == as_before(doc), doc


class _Transfer:  # an event class as `resolve_topic` finds one, with the library's upcasting
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, object]) -> None:
        state["reason"] = "paired"


def test_stored_dates_stay_text_and_other_transcodings_decode_as_the_library_does() -> None:
    app = Application()
    state = app.mapper.transcoder.encode({
        "timestamp": datetime(2026, 3, 3, 10, 0, tzinfo=UTC),
        "facts": {"ids": [UUID(int=7)], "on": {"_type_": "x"}},
        "detail": '{"_type_":"datetime_iso","_data_":"not a date"}',
    })
    plain = PlainEvents(app.mapper)
    plain._classes["t"] = (_Transfer, _Transfer.class_version)
    event = plain.event("t", "ab" * 16, 4, state)
    assert isinstance(event, _Transfer)
    assert event.timestamp == "2026-03-03T10:00:00+00:00"
    assert event.facts == {"ids": [UUID(int=7)], "on": {"_type_": "x"}}
    assert event.detail == '{"_type_":"datetime_iso","_data_":"not a date"}'
    assert (event.reason, event.row_id, event.originator_version) == ("paired", "ab" * 16, 4)
    assert msgspec.json.decode(state)["timestamp"]["_type_"] == "datetime_iso"  # what was stored, untouched
