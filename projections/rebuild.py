"""Read models rebuilt from the first event, one aggregate at a time (`coterm replay`).

Every read-model row is made from the events of one aggregate (`projections.projector`), so a
rebuild need not read the log in its order, as the live projection must to keep its position.
It reads the events in aggregate order: each row is made whole from its events and written
once, nothing is read back from the tables, and n processes share the rebuild by ranges of
aggregate ids, each reading only its own range. Both run the same decoder and projector, so
a rebuild and the live read models cannot drift (`replay --verify` checks it).
"""

from typing import Any

from projections.plain_events import PlainEvents
from projections.projection import TOPICS
from projections.projector import Rows, project
from projections.recorders import ReadModelTables

PAGE = 20_000  # events a query reads; their rows are written together


def id_ranges(n: int) -> list[tuple[str, str | None]]:
    """n ranges of aggregate ids, as (first hex id, hex id after the last or None). Aggregate ids
    are name-based UUIDs (hashes), so equal ranges hold about as many aggregates each."""
    bounds = [format(k * 2**128 // n, "032x") for k in range(n)]
    return [(bounds[k], bounds[k + 1] if k + 1 < n else None) for k in range(n)]


def can_rebuild(app: Any) -> bool:
    """coterm's recorders select in aggregate order; the library's own (in memory) do not."""
    return hasattr(app.process_recorder, "select_rows_by_aggregate")


def rebuild(app: Any, tables: ReadModelTables, stop_at: int, id_range: tuple[str, str | None] = ("", None)) -> int:
    """Project the events up to position `stop_at` of the aggregates in `id_range` into `tables`,
    which hold none of their rows yet; returns how many events were read."""
    plain = PlainEvents(app.mapper)
    select = app.process_recorder.select_rows_by_aggregate
    after, below = (id_range[0], -1), id_range[1]
    rows = Rows(lambda table, row_id: None)  # fresh tables: no row exists before its first event
    read = 0
    projected = frozenset(TOPICS)
    while True:
        # Every event, the few that no read model takes skipped here: cheaper than SQL's filter,
        # which costs a microsecond an event in aggregate order.
        page = select(after, below, stop_at, (), PAGE)
        for position, row_id, version, topic, state in page:
            if topic in projected:
                project(rows, plain.event(topic, row_id, version, state), position)
                read += 1
        if len(page) < PAGE:
            tables.write_rows(rows.changed)
            return read
        last = page[-1]
        after = (last[1], last[2])
        # The page's last aggregate may have more events on the next page: its rows wait for them.
        rest = rows.take(last[1])
        tables.write_rows(rows.changed)
        rows = rest
