"""Apply polled Kafka records to the store: one transaction per partition per batch,
holding the new events and the position they came from (a tracking record)."""

import base64
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError, Tracking

from aggregates import commands, errors
from aggregates.application import UnitOfWork
from aggregates.inbox import DeadLetter
from contracts.parsing import Inbound, Rejection, parse_message
from processor import tracing
from processor.consume import translate
from processor.log_setup import debugging
from processor.store.stored_orders import StoredOrders

log = structlog.get_logger("coterm.inbox")
MAX_ATTEMPTS = 20  # for a single message; a batch splits in halves after its second conflict
# A batch this big takes a turn at writing (`Orders.turn`): one the outbox's commit made conflict
# would cost hundreds of records applied again. A smaller one (input arriving as it is published,
# a few records a partition) is written optimistically: waiting for the outbox's turn cost
# pairing latency (p50 107-206 ms without turns, 301-306 ms with them for every batch, at 200
# transfers/s), and the rare conflict costs a few records.
TURN_AT_RECORDS = 100
POLL_ATTEMPTS = 2  # a poll that lost to another writer is read and tried again whole once, then one partition at a time


def position_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Conflicted(Exception):
    """A batch's commit lost to another writer; `todo`: its records not applied before."""

    def __init__(self, todo: Sequence[Any], changed: Sequence[UUID] = ()) -> None:
        super().__init__(f"{len(todo)} records conflicted")
        self.todo = todo
        self.changed = changed  # the aggregates it changed, which the failed commit evicted from the cache


class _NotTogether(Exception):
    """A record of one of several partitions broke processing: each partition goes alone."""


class Part(NamedTuple):
    """A partition's records polled together."""

    topic: str
    partition: int
    records: Sequence[Any]


@dataclass
class Batch:
    """One partition's records being applied: the message ids seen before or in it, and the new ones."""

    topic: str
    partition: int
    seen: set[str]
    new: list[tuple[str, str]] = field(default_factory=list)  # (message_id, topic:partition:offset)
    traces: list[tuple[str, str]] = field(default_factory=list)  # (message_id, traceparent): tracing on
    latest: commands.Context | None = None  # the applied message with the latest business date


@dataclass
class InboxStats:
    duplicates: int = 0
    dead_letters: int = 0
    by_outcome: dict[tuple[str, str], int] = field(default_factory=dict)  # (outcome, dead-letter reason or "")


class Inbox:
    def __init__(self, app: StoredOrders, clock: Callable[[], datetime] = utc_now) -> None:
        self.app = app
        self.clock = clock
        self.stats = InboxStats()

    def resume_position(self, topic: str, partition: int) -> int | None:
        """The next offset to read, from the store (None: never read)."""
        return self.app.process_recorder.max_tracking_id(position_name(topic, partition))

    def process(self, topic: str, partition: int, records: Sequence[Any]) -> int:
        """Apply records of one partition atomically; returns how many were new.

        A conflict (another processor wrote the same aggregate or position) rolls the
        transaction back; the batch is then re-read against the store and applied again
        (each record parsed once: the parsed messages are immutable). Each attempt at a batch of
        `TURN_AT_RECORDS` or more is a turn at writing (`Orders.turn`): the outbox of the same
        `coterm run` does not commit meanwhile.
        """
        parsed_at: dict[tuple[int, int], Inbound | Rejection] = {}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.app.turn() if len(records) >= TURN_AT_RECORDS else contextlib.nullcontext():
                    return self._attempt([Part(topic, partition, records)], parsed_at)
            except Conflicted as conflict:
                todo = conflict.todo
                log.warning("batch.conflicted", topic=topic, partition=partition, attempt=attempt, size=len(todo),
                            error=str(conflict.__cause__)[:300])
                self.app.reload(conflict.changed)
                if len(todo) > 1 and attempt >= 2:
                    # Other processors keep writing the same aggregates (a transfer's other half,
                    # a source many transfers hold seats of): smaller batches take less time
                    # between reading and committing, so one of them gets through.
                    middle = len(todo) // 2
                    return self.process(topic, partition, todo[:middle]) + self.process(topic, partition, todo[middle:])
                time.sleep(random.uniform(0, 0.02 * attempt))
        raise RuntimeError(f"{topic}:{partition}: batch kept conflicting after {MAX_ATTEMPTS} attempts")

    def process_poll(self, parts: Sequence["Part"]) -> int:
        """Apply the records of several partitions (one poll) in one transaction, with a position
        for each: each read and the commit once a poll, not once a partition. At 200 transfers/s
        a poll holds a few records of each of several partitions, and these fixed costs were
        most of the consumer's CPU. A poll of `TURN_AT_RECORDS` or more goes one partition at a
        time, each a turn at writing as before: there the fixed costs are spread over hundreds of
        records, and one turn for the whole poll held the outbox's process off three times as long
        (it takes a turn between two of the consumer's). A conflict, or a record that breaks
        processing, falls back to `process`, one partition at a time, with its retries, halving
        and quarantine: the transaction that failed recorded nothing, so each partition starts
        where it stood."""
        parts = [part for part in parts if part.records]
        if (len(parts) < 2 or sum(len(part.records) for part in parts) >= TURN_AT_RECORDS
                or not self.app.records_positions_together()):
            return sum(self.process(*part) for part in parts)
        parsed_at: dict[tuple[int, int], Inbound | Rejection] = {}
        for attempt in range(1, POLL_ATTEMPTS + 1):
            try:
                return self._attempt(parts, parsed_at)
            except Conflicted as conflict:
                # Another writer (the outbox's process, completing a transfer on a source
                # subscription this poll holds seats on) committed between this poll's read and
                # its commit. Its commit is in the log now, so the next read sees it: the poll
                # again whole is one more transaction, where one partition at a time was three
                # or more (at 200 transfers/s on PostgreSQL such polls were the slowest 2-3%).
                failed: Exception = conflict
                log.info("poll.conflicted", partitions=len(parts), attempt=attempt)
                self.app.reload(conflict.changed)
            except _NotTogether as breaking:
                failed = breaking
                break
        log.info("poll.one_partition_at_a_time", partitions=len(parts), why=str(failed)[:300])
        return sum(self.process(*part) for part in parts)

    def _attempt(self, parts: Sequence["Part"], parsed_at: dict[tuple[int, int], Inbound | Rejection]) -> int:
        """One try at the parts on fresh state; raises `Conflicted` when another writer got there
        first, and `_NotTogether` when a record of one of several parts breaks processing."""
        for topic, partition, records in parts:
            for r in records:
                if (partition, r.offset) not in parsed_at:
                    parsed_at[partition, r.offset] = parse_message(r.value)
        every = [parsed_at[part.partition, r.offset] for part in parts for r in part.records]
        # One read of the store for the whole poll (`StoredOrders.read_poll`): the positions, the
        # ids seen before (shared: a copy in another partition is a duplicate) and which of the
        # aggregates the messages may create exist.
        uow, resume, seen = self.app.read_poll(
            [position_name(part.topic, part.partition) for part in parts],
            [str(p.envelope.message_id) for p in every if p.envelope is not None],
            [i for p in every if isinstance(p, Inbound) for i in translate.new_ids(p)])
        batches, todos, parsed = [], [], []
        for topic, partition, records in parts:
            resume_at = resume.get(position_name(topic, partition))
            todo = [r for r in records if resume_at is None or r.offset >= resume_at]
            if len(todo) < len(records):
                # Redelivered (e.g. after a rebalance): the store already holds their effects.
                log.info("batch.already_applied", topic=topic, partition=partition,
                         skipped=len(records) - len(todo), resume_at=resume_at)
            if todo:
                batches.append(Batch(topic, partition, seen))
                todos.append(todo)
                parsed.append([parsed_at[partition, r.offset] for r in todo])
        if not todos:
            return 0
        try:
            lines = [[self._traced(uow, batch, r, p) for r, p in zip(todo, some, strict=True)]
                     for batch, todo, some in zip(batches, todos, parsed, strict=True)]
            latest = max((b.latest for b in batches if b.latest is not None), key=lambda c: c.on, default=None)
            if latest is not None:  # once per poll: one Calendar write at most, not one per message
                translate.reach_date(uow, latest)
        except Exception as error:  # noqa: BLE001 - a poison message must not stop the consumer
            uow.discard()
            if len(todos) > 1:
                raise _NotTogether(f"processing failed: {error!r}") from error
            if len(todos[0]) > 1:
                return self._one_by_one(batches[0].topic, batches[0].partition, todos[0])
            uow, quarantined = self._quarantine(batches[0].topic, batches[0].partition, todos[0][0], error)
            lines = [quarantined]
            batches[0].new.clear()
            batches[0].traces.clear()
        positions = [Tracking(position_name(b.topic, b.partition), todo[-1].offset + 1)
                     for b, todo in zip(batches, todos, strict=True)]
        try:
            self.app.commit(uow, positions, seen=[n for b in batches for n in b.new],
                            traces=[t for b in batches for t in b.traces])
        except IntegrityError as conflict:
            raise Conflicted([r for todo in todos for r in todo], uow.discarded) from conflict
        for batch, todo, some_lines in zip(batches, todos, lines, strict=True):
            self._log(batch.topic, batch.partition, todo, some_lines)  # only once committed: a rolled-back batch said nothing
        return sum(map(len, todos))

    def _log(self, topic: str, partition: int, todo: Sequence[Any], lines: list[dict[str, Any]]) -> None:
        """One line per batch with its counts; a message's own line (with its ids) when it was not
        simply applied (a duplicate, a dead letter), and for every message at DEBUG
        (COTERM_LOG_LEVEL=debug): the store already records each message's effect and id, and a
        line per message took about 4% of the consumer's CPU (py-spy, `make bench`)."""
        outcomes: dict[str, int] = {}
        for line in lines:
            self._count(line)
            outcomes[line["outcome"]] = outcomes.get(line["outcome"], 0) + 1
            if line["outcome"] != "applied":
                log.info("message.processed", **line)
            elif debugging():
                log.debug("message.processed", **line)
        log.info("batch.applied", topic=topic, partition=partition, first_offset=todo[0].offset,
                 last_offset=todo[-1].offset, messages=len(todo), **outcomes)

    def _one_by_one(self, topic: str, partition: int, records: Sequence[Any]) -> int:
        """Find the record that breaks processing: each then commits alone."""
        return sum(self.process(topic, partition, [record]) for record in records)

    def _quarantine(self, topic: str, partition: int, record: Any, error: Exception) -> tuple[UnitOfWork, list[dict[str, Any]]]:
        """A record that breaks processing (a bug, not bad input) is dead-lettered, not retried forever."""
        log.error("message.processing_failed", topic=topic, partition=partition, offset=record.offset,
                  error=repr(error)[:500])
        uow = self.app.unit_of_work()
        line = {"topic": topic, "partition": partition, "offset": record.offset, "message_id": None, "type": None}
        return uow, [self._dead_letter(uow, record, line, "INVALID_PAYLOAD", f"processing failed: {error!r}"[:1000])]

    def _traced(self, uow: UnitOfWork, batch: Batch, record: Any, parsed: Inbound | Rejection) -> dict[str, Any]:
        """`_apply` in a span continuing the record's trace; the span's context is recorded with the
        message, for the outbox to continue when it carries out what the message decided."""
        if not tracing.on():
            return self._apply(uow, batch, record, parsed)
        envelope = parsed.envelope
        with tracing.span("coterm.apply", tracing.from_headers(getattr(record, "headers", None)), tracing.CONSUMER, **{
                "messaging.system": "kafka", "messaging.destination.name": batch.topic,
                "messaging.destination.partition.id": str(batch.partition), "messaging.kafka.offset": record.offset,
                "coterm.message_id": str(envelope.message_id) if envelope else None,
                "coterm.message_type": envelope.type if envelope else None}) as current:
            line = self._apply(uow, batch, record, parsed)
            if current is not None:
                current.set_attribute("coterm.outcome", line["outcome"])
                if line["outcome"] != "duplicate" and line["message_id"]:
                    batch.traces.append((line["message_id"], str(tracing.traceparent(current))))
        return line

    def _apply(self, uow: UnitOfWork, batch: Batch, record: Any, parsed: Inbound | Rejection) -> dict[str, Any]:
        envelope = parsed.envelope
        line: dict[str, Any] = {"topic": batch.topic, "partition": batch.partition, "offset": record.offset,
                                "message_id": str(envelope.message_id) if envelope else None,
                                "type": envelope.type if envelope else None}
        if envelope is not None:
            message_id = line["message_id"]
            if message_id in batch.seen:
                return {**line, "outcome": "duplicate"}
            batch.seen.add(message_id)  # a copy later in the same batch is a duplicate too
            batch.new.append((message_id, f"{batch.topic}:{batch.partition}:{record.offset}"))
        if isinstance(parsed, Rejection):
            return self._dead_letter(uow, record, line, parsed.reason, parsed.detail)
        assert isinstance(parsed, Inbound)
        line.update(translate.log_context(parsed))
        ctx = commands.Context(str(envelope.message_id), envelope.occurred_at, self.clock())
        try:
            translate.apply(uow, parsed, ctx)
        except errors.InvalidInput as invalid:
            return self._dead_letter(uow, record, line, invalid.reason, invalid.detail)
        if batch.latest is None or ctx.on > batch.latest.on:  # only applied messages move the business date
            batch.latest = ctx
        return {**line, "outcome": "applied"}

    def _dead_letter(self, uow: UnitOfWork, record: Any, line: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
        original = base64.b64encode(record.value or b"").decode("ascii")
        uow.add(DeadLetter(topic=line["topic"], partition=line["partition"], offset=line["offset"], reason=reason,
                           error=detail, original=original, message_id=line["message_id"], type=line["type"]))
        return {**line, "outcome": "dead_lettered", "reason": reason, "error": detail[:300]}

    def _count(self, line: dict[str, Any]) -> None:
        key = (line["outcome"], line.get("reason") or "")
        self.stats.by_outcome[key] = self.stats.by_outcome.get(key, 0) + 1
        if line["outcome"] == "duplicate":
            self.stats.duplicates += 1
        elif line["outcome"] == "dead_lettered":
            self.stats.dead_letters += 1
