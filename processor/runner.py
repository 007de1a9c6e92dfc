"""`coterm run`: the boring loop. Poll, apply per partition, follow the outbox, repeat."""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError

from aggregates.application import Orders
from processor.broker import ensure_topics
from processor.inbox import Inbox, utc_now
from processor.leadership import Leadership
from processor.kafka_io import KafkaPublisher, ResumeFromStore, caught_up, commit_positions, make_consumer
from processor.outbox import Outbox
from processor.settings import Settings
from processor.store import store_env
from processor.vendor_client import VendorClient

log = structlog.get_logger("coterm.runner")
FOLLOW_EVERY_S = 0.5  # while input flows, followers (read models) catch up at most this often


@dataclass
class Progress:
    received: int = 0
    holding: bool = False
    caught_up: bool = False
    idle_for_s: float = 0.0


def run(app: Orders, settings: Settings, bootstrap: str, stop: threading.Event, until_idle_s: float | None = None,
        on_progress: Callable[[Progress, Inbox, Outbox], None] | None = None,
        followers: Sequence[Callable[[], int]] = ()) -> int:
    ensure_topics(bootstrap, [settings.topic_orders, settings.topic_results, settings.topic_deadletter])
    inbox = Inbox(app)
    consumer = make_consumer(bootstrap, settings.group_id)
    consumer.subscribe([settings.topic_orders], listener=ResumeFromStore(consumer, inbox.resume_position))
    publisher = KafkaPublisher(bootstrap, settings.topic_results, settings.topic_deadletter)
    leadership = Leadership(store_env(settings.store))

    def new_outbox() -> Outbox:
        vendor = VendorClient(settings.vendor_url, settings.vendor_max_attempts) if settings.vendor_url else None
        return Outbox(app, publisher, vendor, settings.pairing_timeout_s, utc_now)

    outbox: Outbox | None = None  # built on taking the lead, from the positions then stored
    progress = Progress()
    last_input = time.monotonic()
    last_expiry_check = 0.0
    last_followed = 0.0
    log.info("processor.started", group_id=settings.group_id, topic=settings.topic_orders, until_idle_s=until_idle_s)
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=200, max_records=500)
            positions: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                inbox.process(tp.topic, tp.partition, records)
                positions[tp] = records[-1].offset + 1
                progress.received += len(records)
            if positions:
                commit_positions(consumer, positions)
            worked = 0
            if leadership.held():
                if outbox is None:
                    outbox = new_outbox()
                try:
                    worked = outbox.follow() + outbox.dispatch()
                    while outbox.follow():  # drain what the dispatcher just recorded
                        pass
                except KafkaError as error:
                    # Nothing was marked published: the same results go out once Kafka answers.
                    log.warning("results.publish_failed", error=str(error))
                    stop.wait(1.0)
            elif outbox is not None:
                outbox.close()  # another instance leads now: its outbox owns the calls
                outbox = None
            now = time.monotonic()
            if not batch or now - last_followed >= FOLLOW_EVERY_S:
                # e.g. read models, on the same log: in bigger, fewer batches while input flows
                last_followed = now
                worked += sum(follow() for follow in followers)
            if batch or worked:
                last_input = now
            progress.holding = bool(consumer.assignment())
            progress.caught_up = caught_up(consumer)
            if outbox is not None and now - last_expiry_check >= 1.0:
                last_expiry_check = now
                outbox.expire(progress.caught_up)
            if not progress.holding or (outbox is not None and outbox.busy):
                last_input = now  # the group join and pending work do not count as idle
            progress.idle_for_s = now - last_input
            if on_progress and outbox is not None:
                on_progress(progress, inbox, outbox)
            if until_idle_s is not None and progress.caught_up and progress.idle_for_s >= until_idle_s:
                log.info("processor.idle", idle_s=round(progress.idle_for_s, 1))
                break
            if not batch and not worked and outbox is not None and outbox.in_flight:
                time.sleep(0.02)  # waiting on the vendor: don't spin
    finally:
        if outbox is not None:
            outbox.close()
        leadership.release()
        consumer.close(autocommit=False)
        publisher.close()
        log.info("processor.stopped", received=progress.received, published=outbox.published if outbox else 0)
    return 0
