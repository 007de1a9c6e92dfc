"""Hostile input: thousands of contract-breaking messages mixed with valid transfers, and hostile
HTTP calls. The consumer never stops, each bad message gets exactly one dead letter with a
reason and its original bytes, every valid transfer completes, and the API never answers 500."""

import base64
import http.client
import io
import json
import random
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.inbox import DeadLetter
from contracts.outbound import DeadLetterReason
from contracts.parsing import parse_message
from processor.consume.inbox import Inbox
from processor.dev.vendor_sim import VendorSimulator
from processor.log_setup import configure_logging
from processor.store.opening import open_store
from projections.projection import Projection
from projections.staff import Staff
from tests import seed
from tests.harness import Scenario, downgrade, envelope, seed_reference_data, upgrade
from tests.hostile import Hostile, hostile_messages, stream
from tests.http_server import call, serving

REASONS = set(DeadLetterReason.__args__)  # type: ignore[attr-defined]
Record = namedtuple("Record", "offset value")


@pytest.fixture(scope="module")
def inbox_world() -> Iterator[tuple[Inbox, Projection, list[int], set[str]]]:
    configure_logging(io.StringIO())
    with tempfile.TemporaryDirectory() as tmp:
        app = open_store(f"{tmp}/hostile.sqlite")
        yield Inbox(app), Projection(app), [0], set()
        app.close()


@given(message=hostile_messages())
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_hostile_message_is_one_dead_letter_with_its_bytes(inbox_world, message: Hostile) -> None:  # type: ignore[no-untyped-def]
    inbox, projection, offset, seen = inbox_world
    app = inbox.app
    before = app.process_recorder.max_notification_id() or 0
    inbox.process("orders", 0, [Record(offset[0], message.value)])  # never raises
    offset[0] += 1
    new = [app.mapper.to_domain_event(n) for n in app.process_recorder.select_notifications(before + 1, 100)]
    envelope_ = parse_message(message.value).envelope
    if envelope_ is not None and str(envelope_.message_id) in seen:
        assert new == []  # hypothesis drew an id again: a duplicate changes nothing
        return
    if envelope_ is not None:
        seen.add(str(envelope_.message_id))
    assert len(new) == 1 and isinstance(new[0], DeadLetter.Recorded), (message.kind, new)
    letter = new[0]
    assert letter.reason in REASONS and letter.error
    assert base64.b64decode(letter.original) == (message.value or b"")
    projection.run_to_end()  # the read models take whatever the inbox recorded
    assert projection.position == app.process_recorder.max_notification_id()


def hostile_stream_size(store: str) -> int:
    return 10_000 if not store.startswith("postgresql") else 2_000  # PostgreSQL: same mix, smaller, for CI's time


def test_a_hostile_stream_dead_letters_each_bad_message_once_and_completes_every_transfer(
        scenario: Scenario, vendor: VendorSimulator) -> None:
    seed_reference_data(scenario)
    scenario.send("subscription.resized", {"subscription_id": "c1-s1", "seats": 1000}, key="c1",  # room for 100
                  occurred_at="2026-10-01T10:00:00Z")
    rnd = random.Random(2026)
    valid = []
    for n in range(100):
        for half in (downgrade(f"ok-{n}", seats=1), upgrade(f"ok-{n}", seats=1)):
            message = envelope("transfer.downgrade_ordered" if "subscription_id" in half else "transfer.upgrade_ordered",
                               half)
            valid.append(message)
    bad = stream(seed=2026, count=hostile_stream_size(scenario.store), valid_ids=[m["message_id"] for m in valid[:50]])
    for m in valid[:50]:  # applied first: the hostile copies of their ids, on any partition, are the duplicates
        scenario.producer.send(scenario.settings.topic_orders, value=json.dumps(m).encode(), key=b"c1")
    scenario.producer.flush()
    scenario.process()
    mixed = [(h.value, h.key) for h in bad] + [(json.dumps(m).encode(), b"c1") for m in valid[50:]]
    rnd.shuffle(mixed)
    for value, key in mixed:
        scenario.producer.send(scenario.settings.topic_orders, value=value, key=key)
    scenario.producer.flush()

    scenario.process(idle_s=1.5, timeout_s=600)  # never stops or crash-loops: it goes idle having read everything

    letters = scenario.dead_letters()
    expected = Counter(base64.b64encode(h.value or b"").decode() for h in bad if h.duplicate_of is None)
    got = Counter(letter["original"] for letter in letters)
    assert got == expected  # each bad message exactly once, with its original bytes
    assert {letter["reason"] for letter in letters} <= REASONS and all(letter["error"] for letter in letters)
    results = scenario.results()
    completed = Counter(r["payload"]["operation_id"] for r in results if r["type"] == "transfer.completed")
    missing = sorted({f"ok-{n}" for n in range(100)} - set(completed))
    assert completed == Counter({f"ok-{n}": 1 for n in range(100)}), [
        (r["type"], r["payload"].get("reason_code"), r["payload"].get("detail")) for r in results
        if r["payload"].get("operation_id") in missing[:3]]
    assert not [r for r in results if r["payload"].get("operation_id", "").startswith("hostile-")]
    assert len(vendor.state.requests) == 100  # a copy under a valid id with 99 seats changed nothing
    assert all(json.loads(r["body"])["seats"] == 1 for r in vendor.state.requests)


# -- HTTP --------------------------------------------------------------------------------------
TOKEN = "admin-token-0123456789"


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        app = open_store(f"{tmp}/api.sqlite")
        seed.customer_with_subscriptions(app)
        for n, outcome in enumerate(seed.OUTCOMES):
            seed.operation(app, f"op-{n}", outcome)
        staff_file = Path(tmp) / "staff.json"
        staff_file.write_text(json.dumps({"users": [{"name": "a", "token": TOKEN, "roles": ["Account Administrator"]}]}))
        with serving(app, Staff.load(str(staff_file))) as url:
            yield url
        app.close()


def request(url: str, method: str = "GET", data: bytes | None = None, token: str | None = TOKEN,
            content_type: str = "application/json") -> tuple[int, dict]:  # type: ignore[type-arg]
    return call(url, method, data, token, content_type)  # type: ignore[no-any-return]


text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300) | st.sampled_from(
    ["", "2026-13-45", "9999-12-31T23:59:59-14:00", "0000-01-01", "-1", "1e400", "0", "99999999999999999999",
     "../../etc/passwd", "%00", "' OR 1=1 --", "null", "\x00"])


@given(status=text, customer=text, since=text, until=text, limit=text, cursor=text, on=text)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_query_parameters_get_an_answer_never_a_500(api: str, status: str, customer: str, since: str,
                                                             until: str, limit: str, cursor: str, on: str) -> None:
    query = urllib.parse.urlencode({"status": status, "customer": customer, "since": since, "until": until,
                                    "limit": limit, "cursor": cursor})
    code, body = request(f"{api}/api/operations?{query}")
    assert code in (200, 400), (code, body)
    if code == 400:
        assert body["error"] == "BAD_PARAMETER" and body["detail"]
    code, body = request(f"{api}/api/customers/{urllib.parse.quote(customer, safe='')}?on={urllib.parse.quote(on)}")
    assert code in (200, 400, 404), (code, body)
    code, body = request(f"{api}/api/operations/{urllib.parse.quote(cursor, safe='')}")
    assert code in (200, 404), (code, body)


@given(body=st.binary(max_size=2000) | st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=50),
                                                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                                                    max_leaves=30).map(lambda v: json.dumps(v).encode()))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_action_bodies_get_4xx_with_a_reason(api: str, body: bytes) -> None:
    code, answer = request(f"{api}/api/operations/op-0/cancel", "POST", body)
    # op-0 is completed: a well-formed body gets 409, anything else 400; never a 500
    assert code in (400, 409), (code, answer)
    assert answer["error"] and answer["detail"]


def _announced_body_answer(api: str, size: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    """Send only the headers of a POST announcing `size` bytes and read the answer. The server
    refuses by Content-Length before reading a body; sending 2 MB with urllib raced that answer
    (a connection reset while still uploading, now and then)."""
    url = urllib.parse.urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", "/api/operations/op-4/cancel")
        for name, value in (("Content-Type", "application/json"), ("Content-Length", str(size)),
                            ("Authorization", f"Bearer {TOKEN}")):
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_oversized_and_deeply_nested_bodies_are_refused(api: str) -> None:
    code, answer = _announced_body_answer(api, 2_000_000)
    assert (code, answer["error"]) == (413, "BODY_TOO_LARGE")
    nested = b'{"reason": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    code, answer = request(f"{api}/api/operations/op-4/cancel", "POST", nested)
    assert code == 400 and answer["error"] == "BAD_PARAMETER"
    code, answer = request(f"{api}/api/operations/op-4/cancel", "POST", b'{"reason": "ok"}', content_type="text/plain")
    assert code in (200, 400, 415) and code != 500


def test_a_dead_letter_too_big_for_kafka_goes_out_without_its_bytes_rather_than_blocking() -> None:
    from processor.kafka_io import MAX_MESSAGE_BYTES, fit
    from processor.outbox.results import Outbound

    letter = {"reason": "INVALID_PAYLOAD", "error": "name: too long", "topic": "t", "partition": 0, "offset": 1,
              "original": base64.b64encode(b"a" * MAX_MESSAGE_BYTES).decode()}
    shrunk = json.loads(fit(Outbound("deadletter", None, json.dumps(letter).encode(), "dead_letter")).value)
    assert shrunk["original"] == "" and f"original of {MAX_MESSAGE_BYTES} bytes left out" in shrunk["error"]
    assert {k: v for k, v in shrunk.items() if k not in ("original", "error")} == {
        k: v for k, v in letter.items() if k not in ("original", "error")}
    small = Outbound("deadletter", None, json.dumps({**letter, "original": "YQ=="}).encode(), "dead_letter")
    assert fit(small) is small  # the usual case: untouched


def test_an_event_with_a_non_uuid_cause_is_still_published_with_a_stable_causation_id() -> None:
    # Found by the outage test: a retry recorded with action id "retry-x" crash-looped the outbox.
    from uuid import UUID

    from processor.outbox.results import _cause

    assert _cause("6f1c8c3e-1b7a-4c57-9d43-0a0a0a0a0a0a") == UUID("6f1c8c3e-1b7a-4c57-9d43-0a0a0a0a0a0a")
    assert _cause("retry-x") == _cause("retry-x") != _cause("retry-y")
