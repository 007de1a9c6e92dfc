"""Audit: an aggregate's history and state as of a moment, replay with verification, export."""

import json
import multiprocessing
import queue
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

from aggregates.application import Orders
from aggregates.bulk import Bulk
from aggregates.customer import Customer
from aggregates.migration import Migration
from aggregates.subscription import Subscription
from aggregates.transfer import Transfer
from projections.projection import Projection, read_models
from projections.rebuild import can_rebuild, id_ranges, rebuild
from projections.recorders import TABLES
from projections.timeline import aggregate_state, event_record

SHARES_PER_WORKER = 8  # ranges per process: the faster one takes over what the slower has not begun
KINDS: dict[str, Any] = {"subscription": Subscription, "customer": Customer, "transfer": Transfer, "bulk": Bulk,
                         "migration": Migration}


class AuditError(ValueError):
    """The audit question cannot be answered; the message says why."""


def history(app: Orders, kind: str, business_id: str, as_of: datetime | None = None) -> dict[str, Any]:
    cls = KINDS[kind]
    aggregate_id: UUID = cls.create_id(business_id)
    events = list(app.events.get(aggregate_id))
    if not events:
        raise AuditError(f"no {kind} {business_id!r} in the store")
    if as_of is not None:
        events = [e for e in events if e.timestamp <= as_of]
        if not events:
            raise AuditError(f"{kind} {business_id!r} did not exist yet at {as_of.isoformat()}")
    state = app.repository.get(aggregate_id, version=events[-1].originator_version)
    return {"kind": kind, "id": business_id, "as_of": as_of.isoformat() if as_of else None,
            "events": [event_record(e) for e in events], "state": aggregate_state(state)}


def export(app: Orders, since: datetime, out: TextIO, page: int = 1000, until: datetime | None = None,
           progress: Any = None) -> int:
    """Every event recorded at or after `since` (and before `until`), as JSON Lines in store order.
    `progress(read, written)` is called every few seconds of a long export."""
    written = 0
    said_at = time.monotonic()
    for position, event in _all_events(app, page):
        if progress is not None and time.monotonic() - said_at >= 5:
            said_at = time.monotonic()
            progress(position, written)
        if event.timestamp >= since and (until is None or event.timestamp < until):
            out.write(json.dumps(event_record(event, position), sort_keys=True) + "\n")
            written += 1
    return written


def _all_events(app: Orders, page: int) -> Iterator[tuple[int, Any]]:
    start = 1
    while True:
        notifications = app.process_recorder.select_notifications(start=start, limit=page)
        if not notifications:
            return
        for n in notifications:
            yield n.id, app.mapper.to_domain_event(n)
        start = notifications[-1].id + 1


def replay(app: Orders, verify: bool = False, workers: int = 2) -> dict[str, Any]:
    """Rebuild every read model from the first event into fresh `rp_*` tables.

    With `verify`, the rebuild stops where the live read models are and compares them
    row by row, byte for byte. On a database file or server, `workers` processes (this one
    among them) share the rebuild by ranges of aggregate ids (`projections.rebuild`).
    """
    live = Projection(app, prefix="rm")
    stop_at = live.position if verify else (app.process_recorder.max_notification_id() or 0)
    env = dict(app.env)
    shared = isinstance(app.factory, SQLiteFactory | PostgresFactory) and ":memory:" not in env.get("SQLITE_DBNAME", "")
    if not can_rebuild(app):
        # The library's own recorders (in memory) read only in log order: big pages, so a row
        # many events change is read and written once a page, not once an event.
        read = _fresh(app).run_to_end(stop_at=stop_at, page=50_000)
    elif not shared or workers < 2:
        read = rebuild(app, _fresh(app, indexes=False).tables, stop_at)
    else:
        read = _rebuild_shared(app, env, stop_at, workers)
    fresh = Projection(app, prefix="rp", create=False)
    fresh.tables.set_indexes(present=True)
    if stop_at > fresh.position:
        fresh.tables.insert_tracking(Tracking(fresh.name, stop_at))
    report: dict[str, Any] = {"events_read": read, "position": fresh.position, "differences": []}
    if verify:
        report["differences"] = compare(live, fresh)
    return report


def _fresh(app: Orders, indexes: bool = True) -> Projection:
    """The `rp_*` tables, dropped and made again; `indexes` False: their secondary indexes are
    made once every row is in (`ReadModelTables.set_indexes`)."""
    read_models(app, prefix="rp").drop()
    fresh = Projection(app, prefix="rp")
    if not indexes:
        fresh.tables.set_indexes(present=False)
    return fresh


def _rebuild_shared(app: Orders, env: dict[str, str], stop_at: int, workers: int) -> int:
    """This process and `workers - 1` spawned ones rebuild ranges of aggregate ids, each taking
    the next range from one queue when it has done one, so the faster does more. This one does
    not wait for the others, which first import coterm (half a second or more)."""
    context = multiprocessing.get_context("spawn")
    todo: Any = context.Queue()
    done: Any = context.Queue()
    others = [context.Process(target=_rebuild_taken, args=(env, stop_at, todo, done), daemon=True)
              for _ in range(workers - 1)]
    for process in others:
        process.start()  # it imports while the old tables are dropped, as long on a big store
    try:
        tables = _fresh(app, indexes=False).tables
        for id_range in id_ranges(workers * SHARES_PER_WORKER):
            todo.put(id_range)
        for _ in range(workers):
            todo.put(None)  # a stop for each process, this one's among them
        read = 0
        while (id_range := _taken(todo, others)) is not None:
            read += rebuild(app, tables, stop_at, id_range)
        return read + sum(_share_read(_taken(done, others)) for _ in others)
    finally:
        for process in others:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


def _rebuild_taken(env: dict[str, str], stop_at: int, todo: Any, done: Any) -> None:
    """In a spawned process: rebuild the ranges it takes until a stop, into the tables the
    caller made (made again from two processes at once fails on PostgreSQL, "tuple
    concurrently updated"); tell how many events it read, or why it failed."""
    try:
        app = Orders(env={**env, "CREATE_TABLE": "n"})
        try:
            tables, read = read_models(app, prefix="rp", create=False), 0
            while (id_range := todo.get()) is not None:
                read += rebuild(app, tables, stop_at, id_range)
        finally:
            app.close()
        done.put(("read", read))
    except BaseException as error:  # the caller raises it; a silent exit would hang it
        done.put(("failed", f"{type(error).__name__}: {error}"))


def _taken(items: Any, others: list[Any]) -> Any:
    """The next item of a queue the spawned processes share; an error once one of them has died
    (killed, say): its range is not done, and had it died holding the queue's lock, a plain
    `get` would wait forever."""
    while True:
        try:
            return items.get(timeout=1)
        except queue.Empty:
            dead = [p.exitcode for p in others if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a replay process ended with exit code {dead[0]}") from None


def _share_read(outcome: tuple[str, Any]) -> int:
    """How many events a spawned process read, from what it sent (`_rebuild_taken`)."""
    said, value = outcome
    if said == "failed":
        raise RuntimeError(f"a replay process failed: {value}")
    return int(value)


def compare(live: Projection, fresh: Projection) -> list[str]:
    differences = []
    for name in TABLES:
        a = _rows(live, name)
        b = _rows(fresh, name)
        for row_id in sorted(a.keys() | b.keys()):
            if row_id not in b:
                differences.append(f"{name} {row_id}: in the live read model only ({_label(a[row_id])})")
            elif row_id not in a:
                differences.append(f"{name} {row_id}: missing from the live read model ({_label(b[row_id])})")
            elif a[row_id] != b[row_id]:
                differences.append(f"{name} {row_id}: differs ({_label(b[row_id])}): {_first_difference(a[row_id], b[row_id])}")
    return differences


def _rows(projection: Projection, name: str) -> dict[str, dict[str, Any]]:
    rows = projection.tables.fetch(f"SELECT * FROM {projection.tables.table(name)}")
    return {r["id"]: r for r in rows}


def _label(row: dict[str, Any]) -> str:
    for key in ("operation_id", "customer_id", "subscription_id", "request_id", "reason"):
        if row.get(key):
            return f"{key}={row[key]}"
    return "row"


def _first_difference(live: dict[str, Any], fresh: dict[str, Any]) -> str:
    for column in sorted(fresh):
        if live.get(column) != fresh.get(column):
            if column == "doc":
                a, b = json.loads(live["doc"]), json.loads(fresh["doc"])
                keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
                return "doc fields " + ", ".join(f"{k}: live {a.get(k)!r} vs replay {b.get(k)!r}" for k in keys[:3])
            return f"column {column}: live {live.get(column)!r} vs replay {fresh.get(column)!r}"
    return "unknown"
