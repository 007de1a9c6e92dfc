"""One order followed from its publisher to the vendor and back (issue 19): with tracing on, the
applied message continues the `traceparent` of its Kafka headers, each vendor call attempt is a
span under the message that decided the call and sends `traceparent` to the vendor, and the
result carries the trace in its Kafka headers. The inbox and the outbox run in this process, on
the real broker, store and vendor simulator, so the SDK's in-memory exporter sees every span."""

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from processor import tracing
from processor.consume.inbox import Inbox
from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from processor.kafka_io import KafkaPublisher
from processor.outbox.dispatch import Outbox
from processor.outbox.vendor_client import VendorClient
from tests.harness import Scenario, downgrade, envelope, seed_reference_data, upgrade

UPSTREAM_TRACE = "0af7651916cd43dd8448eb211c80319c"
UPSTREAM = f"00-{UPSTREAM_TRACE}-b7ad6b7169203331-01"  # the publisher's span, as W3C Trace Context says
OP = f"trace-{uuid.uuid4().hex[:8]}"  # the vendor simulator is shared by the session's tests


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)


def _consume_all(s: Scenario, inbox: Inbox, expected: int) -> None:
    consumer = KafkaConsumer(s.settings.topic_orders, bootstrap_servers=s.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10_000)
    try:
        applied = 0
        while applied < expected:
            batch = consumer.poll(timeout_ms=5000)
            assert batch, f"only {applied} of {expected} records came"
            for tp, records in batch.items():
                inbox.process(tp.topic, tp.partition, records)
                applied += len(records)
    finally:
        consumer.close()


def test_an_order_is_one_trace_from_its_publisher_to_the_vendor_and_its_result(
        broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path, spans: InMemorySpanExporter) -> None:
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    seed_reference_data(s)  # 5 messages, no trace of their own
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for type_, payload in (("transfer.downgrade_ordered", downgrade(OP)), ("transfer.upgrade_ordered", upgrade(OP))):
        producer.send(s.settings.topic_orders, key=b"c1", value=json.dumps(envelope(type_, payload)).encode(),
                      headers=[("traceparent", UPSTREAM.encode())])
    producer.flush()
    app = s.open_store()
    publisher = KafkaPublisher(broker.bootstrap, s.settings.topic_results, s.settings.topic_deadletter)
    outbox = Outbox(app, publisher, VendorClient(vendor.url), 900, lambda: datetime.now(timezone.utc))
    try:
        _consume_all(s, Inbox(app), expected=7)
        deadline = time.monotonic() + 30
        while not s.results_for(OP):
            assert time.monotonic() < deadline, "no result within 30 s"
            outbox.follow()
            outbox.dispatch()
            time.sleep(0.05)
    finally:
        outbox.close()
        publisher.close()
        app.close()

    finished = spans.get_finished_spans()
    applied = [x for x in finished if x.name == "coterm.apply"]
    assert len(applied) == 7
    traced = [x for x in applied if x.context.trace_id == int(UPSTREAM_TRACE, 16)]
    assert len(traced) == 2 and all(x.parent is not None and x.parent.span_id == 0xB7AD6B7169203331 for x in traced)
    pairing = max(traced, key=lambda x: x.end_time)  # the second half decided the call
    [call] = [x for x in finished if x.name == "coterm.vendor_call"]
    assert call.context.trace_id == int(UPSTREAM_TRACE, 16) and call.parent.span_id == pairing.context.span_id
    assert call.attributes["http.response.status_code"] in (200, 201) and call.attributes["coterm.operation_id"] == OP
    sent = vendor.state.traceparents[OP]
    assert sent == [f"00-{UPSTREAM_TRACE}-{call.context.span_id:016x}-01"]  # what the vendor was told
    [published] = [x for x in finished if x.name == "coterm.publish" and x.attributes["coterm.message_type"] ==
                   "transfer.completed"]
    assert published.context.trace_id == int(UPSTREAM_TRACE, 16) and published.parent.span_id == pairing.context.span_id
    consumer = KafkaConsumer(s.settings.topic_results, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    try:
        headers = [dict(r.headers) for r in consumer if json.loads(r.value)["type"] == "transfer.completed"]
    finally:
        consumer.close()
    assert headers == [{"traceparent": f"00-{UPSTREAM_TRACE}-{published.context.span_id:016x}-01".encode()}]


def test_with_tracing_off_nothing_is_recorded_and_results_carry_no_headers(
        broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path) -> None:
    assert not tracing.on()
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    s.send("transfer.cancel_requested", {"operation_id": "x-op", "requested_by": "ops", "reason": "no"})
    app = s.open_store()
    try:
        _consume_all(s, Inbox(app), expected=1)
        with app.recorder.datastore.transaction(commit=False) as c:
            c.execute("SELECT COUNT(*) FROM coterm_message_traces")
            assert c.fetchone()[0] == 0
    finally:
        app.close()
