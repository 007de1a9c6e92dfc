"""OpenTelemetry traces: off unless the standard OTEL_EXPORTER_OTLP_ENDPOINT names a collector.

One order can be followed from its publisher to the vendor and back: a span per applied message
(`coterm.apply`, continuing the `traceparent` of its Kafka headers when there is one), per vendor
call attempt (`coterm.vendor_call`, sending `traceparent` to the vendor) and per result published
(`coterm.publish`, its `traceparent` in the result's Kafka headers). The vendor call and the
result happen later, in the outbox process, from the store: the trace context of each applied
message is recorded beside it (`coterm_message_traces`), in the same transaction, and the outbox
continues the trace of the message that caused what it carries out. Off, nothing is recorded
and every span is a no-op.
"""

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()
CONSUMER, CLIENT, PRODUCER = SpanKind.CONSUMER, SpanKind.CLIENT, SpanKind.PRODUCER
_tracer: trace.Tracer | None = None


def configure(service: str = "coterm") -> bool:
    """Export spans over OTLP (HTTP) when OTEL_EXPORTER_OTLP_ENDPOINT is set; True when tracing is on."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return False
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads the standard OTEL_* variables
    use(provider)
    return True


def use(provider: Any) -> None:
    """Trace with this provider (tests give one with an in-memory exporter); None: off."""
    global _tracer
    _tracer = provider.get_tracer("coterm") if provider is not None else None


def on() -> bool:
    return _tracer is not None


@contextmanager
def span(name: str, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
         **attributes: Any) -> Iterator[Span | None]:
    """A span under `parent` (None: a new trace); yields None when tracing is off."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, context=parent or Context(), kind=kind,
                                       attributes={k: v for k, v in attributes.items() if v is not None}) as current:
        yield current


def start(name: str, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Span | None:
    """A span under `parent` that `finish` ends: for work that starts and ends in different
    steps of a loop (`vendor_calls`), where `span`'s `with` cannot hold it. None when tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, context=parent or Context(), kind=kind,
                              attributes={k: v for k, v in attributes.items() if v is not None})


def finish(current: Span | None, status_code: int | None) -> None:
    """End a span from `start`, with the answer's HTTP status when there was one."""
    if current is None:
        return
    if status_code is not None:
        current.set_attribute("http.response.status_code", status_code)
    current.end()


def from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Context | None:
    """The trace context a Kafka record carries (`traceparent` header), if any."""
    carrier = {key: value.decode("latin-1") for key, value in headers or () if isinstance(value, bytes)}
    return PROPAGATOR.extract(carrier) if "traceparent" in carrier else None


def parent(traceparent: str | None) -> Context | None:
    return PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None


def traceparent(current: Span | None) -> str | None:
    """The W3C `traceparent` naming this span, to send on (None when tracing is off)."""
    if current is None:
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(current))
    return carrier.get("traceparent")


def published(messages: list[Any], traces_of: Callable[[list[str]], dict[str, str]]) -> list[Any]:
    """Outbound messages, each with a `coterm.publish` span in the trace of the message that caused
    it and that span's `traceparent` in its headers (unchanged when tracing is off)."""
    if _tracer is None or not messages:
        return messages
    traces = traces_of([m.cause for m in messages if m.cause])
    out = []
    for message in messages:
        with span("coterm.publish", parent(traces.get(message.cause or "")), PRODUCER, **{
                "messaging.system": "kafka", "messaging.operation.type": "send", "coterm.message_type": message.type,
                "coterm.causation_id": message.cause}) as current:
            sent = traceparent(current)
        out.append(replace(message, headers=(("traceparent", sent.encode()),)) if sent else message)
    return out
