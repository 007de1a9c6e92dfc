"""The inbox against a real store: redelivered batches and poison messages."""

import json
from collections import namedtuple


from processor.inbox import Inbox
from processor import translate
from tests.harness import envelope

Record = namedtuple("Record", "offset value")  # what the inbox reads of a kafka-python ConsumerRecord


def record(offset: int, type_: str, payload: dict) -> Record:
    return Record(offset, json.dumps(envelope(type_, payload)).encode())


def test_a_batch_delivered_twice_is_applied_once(app) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(app)
    batch = [record(0, "catalog.product_defined", {"product_id": "p", "name": "P", "supports_usage_based": True,
                                                   "in_usage_bundle": False}),
             Record(1, b"garbage")]
    assert inbox.process("t", 0, batch) == 2
    head = app.recorder.max_notification_id()
    assert inbox.process("t", 0, batch) == 0  # the stored position says: seen
    assert app.recorder.max_notification_id() == head
    assert inbox.resume_position("t", 0) == 2


def test_a_message_that_breaks_processing_is_dead_lettered_and_the_rest_applied(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(app)
    original = translate.HANDLERS["catalog.product_defined"]

    def explode(uow, ctx, payload):  # type: ignore[no-untyped-def]
        if payload.product_id == "bomb":
            raise KeyError("a bug in a handler")
        return original(uow, ctx, payload)

    monkeypatch.setitem(translate.HANDLERS, "catalog.product_defined", explode)
    batch = [record(n, "catalog.product_defined", {"product_id": pid, "name": pid, "supports_usage_based": True,
                                                   "in_usage_bundle": False}) for n, pid in enumerate(["a", "bomb", "c"])]
    assert inbox.process("t", 0, batch) == 3
    assert inbox.stats.dead_letters == 1 and inbox.resume_position("t", 0) == 3
    from aggregates.catalog import Catalog
    assert set(app.repository.get(Catalog.create_id()).products) == {"a", "c"}
