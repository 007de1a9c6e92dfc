"""Golden JSON round-trips, every kind of bad input, and schema drift."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import Envelope
from contracts.outbound import RESULTS, DeadLetterMessage
from contracts.parsing import Inbound, Rejection, parse_message
from contracts.schemas import SCHEMA_DIR, render
from contracts.vendor import VendorTransferRequest

GOLDEN = Path(__file__).parent / "golden"
INBOUND = json.loads((GOLDEN / "inbound.json").read_text())
RESULT_GOLDEN = json.loads((GOLDEN / "results.json").read_text())


def envelope(type_: str, payload: Any, **over: Any) -> bytes:
    doc = {"message_id": "6f1c2a4e-8a8b-4e59-9a5a-0c9b8f7d6e5a", "type": type_, "schema_version": 1,
           "occurred_at": "2026-11-01T10:00:00Z", "source": "commerce-platform", "payload": payload}
    doc.update(over)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("type_", sorted(INBOUND))
def test_golden_inbound_parses_and_round_trips(type_: str) -> None:
    parsed = parse_message(envelope(type_, INBOUND[type_]))
    assert isinstance(parsed, Inbound), parsed
    dumped = parsed.payload.model_dump(mode="json", exclude_unset=True)
    assert json.loads(json.dumps(dumped)) == INBOUND[type_]


@pytest.mark.parametrize("type_", sorted(RESULT_GOLDEN))
def test_golden_results_round_trip(type_: str) -> None:
    model = RESULTS[type_].validate_python(RESULT_GOLDEN[type_])
    assert json.loads(RESULTS[type_].dump_json(model)) == RESULT_GOLDEN[type_]


def test_vendor_request_matches_contract_example() -> None:
    body = {"operation_id": "op", "customer_id": "c",
            "source": {"subscription_id": "s", "seats_before": 10, "seats_after": 7},
            "target": {"kind": "new_subscription", "subscription_id": "n", "plan_id": "p", "seats_before": 0,
                       "seats_after": 3, "start_date": "2026-01-05", "renewal_date": "2027-01-05",
                       "billing_start_date": "2026-11-02"}, "seats": 3}
    assert json.loads(VendorTransferRequest.model_validate(body).model_dump_json()) == body


GOOD_DOWN = INBOUND["transfer.downgrade_ordered"]


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"\xff\xfe\x00garbage", "INVALID_JSON"),
        (b"not json", "INVALID_JSON"),
        (b"null", "INVALID_JSON"),
        (b"[1, 2]", "INVALID_JSON"),
        (b'"a string"', "INVALID_JSON"),
        (b"", "INVALID_JSON"),
        (None, "INVALID_JSON"),
        (b"{}", "INVALID_ENVELOPE"),
        (envelope("transfer.downgrade_ordered", GOOD_DOWN, message_id="not-a-uuid"), "INVALID_ENVELOPE"),
        (envelope("transfer.downgrade_ordered", GOOD_DOWN, occurred_at="2026-11-01T10:00:00"), "INVALID_ENVELOPE"),
        (envelope("transfer.downgrade_ordered", GOOD_DOWN, occurred_at="yesterday"), "INVALID_ENVELOPE"),
        (envelope("transfer.downgrade_ordered", GOOD_DOWN, schema_version="1"), "INVALID_ENVELOPE"),
        (envelope("order.teleported", GOOD_DOWN), "UNKNOWN_TYPE"),
        (envelope("transfer.downgrade_ordered", GOOD_DOWN, schema_version=2), "UNSUPPORTED_SCHEMA_VERSION"),
        (envelope("transfer.downgrade_ordered", [1]), "INVALID_PAYLOAD"),
        (envelope("transfer.downgrade_ordered", {**GOOD_DOWN, "seats": 0}), "INVALID_PAYLOAD"),
        (envelope("transfer.downgrade_ordered", {**GOOD_DOWN, "seats": -2}), "INVALID_PAYLOAD"),
        (envelope("transfer.downgrade_ordered", {**GOOD_DOWN, "seats": "3"}), "INVALID_PAYLOAD"),
        (envelope("transfer.downgrade_ordered", {**GOOD_DOWN, "seats": 2.5}), "INVALID_PAYLOAD"),
        (envelope("transfer.downgrade_ordered", {k: v for k, v in GOOD_DOWN.items() if k != "operation_id"}), "INVALID_PAYLOAD"),
        (envelope("subscription.purchased", {**INBOUND["subscription.purchased"], "start_date": 20260105}), "INVALID_PAYLOAD"),
        (envelope("subscription.purchased", {**INBOUND["subscription.purchased"], "end_date": "2025-01-01"}), "INVALID_PAYLOAD"),
        (envelope("subscription.purchased", {**INBOUND["subscription.purchased"], "billing_model": "weekly"}), "INVALID_PAYLOAD"),
        (envelope("customer.registered", {**INBOUND["customer.registered"], "data_complete": "yes"}), "INVALID_PAYLOAD"),
        (envelope("migration.requested", {**INBOUND["migration.requested"], "product_ids": []}), "INVALID_PAYLOAD"),
        (envelope("transfer.upgrade_ordered", {**INBOUND["transfer.upgrade_ordered"], "target": {"kind": "teleport"}}), "INVALID_PAYLOAD"),
        (envelope("customer.updated", {"customer_id": "c"}), "INVALID_PAYLOAD"),
    ],
)
def test_bad_input_is_a_structured_rejection(raw: bytes | None, reason: str) -> None:
    result = parse_message(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail
    # Once the envelope parsed, the message counts as seen (dedupe by message_id).
    assert (result.envelope is not None) == (reason in {"UNKNOWN_TYPE", "UNSUPPORTED_SCHEMA_VERSION", "INVALID_PAYLOAD"})


def test_resource_count_other_than_one_is_valid_input() -> None:
    # MULTI_RESOURCE_PLAN is a business refusal at transfer time, so 0 or 3 resources parse.
    for count in (0, 3):
        payload = {**INBOUND["subscription.purchased"], "resource_count": count}
        assert isinstance(parse_message(envelope("subscription.purchased", payload)), Inbound)
    bad = {**INBOUND["subscription.purchased"], "resource_count": -1}
    assert parse_message(envelope("subscription.purchased", bad)).reason == "INVALID_PAYLOAD"  # type: ignore[union-attr]


def test_ten_megabytes_of_garbage_is_rejected_not_raised() -> None:
    assert parse_message(b"\x8f" * 10_000_000).reason == "INVALID_JSON"  # type: ignore[union-attr]
    assert parse_message(b"[" * 5_000_000).reason == "INVALID_JSON"  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_parse_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert isinstance(parse_message(raw), Inbound | Rejection)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(INBOUND)), st.dictionaries(st.text(max_size=20), json_values, max_size=6))
def test_parse_never_raises_on_arbitrary_payloads(type_: str, payload: dict) -> None:
    result = parse_message(envelope(type_, payload))
    assert isinstance(result, Inbound) or result.reason == "INVALID_PAYLOAD"


def test_dead_letter_shape() -> None:
    letter = DeadLetterMessage(reason="INVALID_JSON", error="x", topic="orders.v1", partition=0, offset=7, original="AA==")
    assert set(json.loads(letter.model_dump_json())) == {"reason", "error", "topic", "partition", "offset", "original"}


def test_envelope_keeps_offset_aware_time() -> None:
    env = Envelope.model_validate_json(envelope("transfer.cancel_requested", {}, occurred_at="2026-11-01T23:30:00-02:00"))
    assert env.occurred_at.utcoffset() is not None


def test_committed_schemas_match_the_models() -> None:
    expected = render()
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(committed) == sorted(expected), "run `make schemas` and commit contracts/schemas/"
    drifted = [name for name, text in expected.items() if committed[name] != text]
    assert drifted == [], f"schemas drifted from the models: {drifted}; run `make schemas`"


@pytest.mark.parametrize("type_", ["x" * 300, "a\x00b", "transfer.sideways_ordered"])
def test_a_type_not_in_the_table_is_unknown_type_whatever_its_length_or_characters(type_: str) -> None:
    message = {"message_id": "6f1c8c3e-1b7a-4c57-9d43-0a0a0a0a0a0a", "type": type_, "schema_version": 1,
               "occurred_at": "2026-11-01T10:00:00Z", "source": "tests", "payload": {}}
    parsed = parse_message(json.dumps(message).encode())
    assert isinstance(parsed, Rejection) and parsed.reason == "UNKNOWN_TYPE" and parsed.envelope is not None
