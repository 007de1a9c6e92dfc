"""Read-model tables beside the event store, written with the library's tracking records.

Each table holds an `id` (the aggregate id), a few indexed columns for queries, and the
row's JSON document. A batch of row changes and the notification position it came from
are written in one transaction, so a projection can stop, resume, be dropped and rebuilt.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from projections.doc_json import dump

# table -> indexed columns (besides id and doc); types are portable between SQLite and PostgreSQL
TABLES: dict[str, dict[str, str]] = {
    "operations": {"operation_id": "TEXT", "customer_id": "TEXT", "status": "TEXT", "reason_code": "TEXT",
                   "seq": "BIGINT", "first_at": "TEXT", "updated_at": "TEXT", "pairing_latency_ms": "BIGINT",
                   "vendor_latency_ms": "BIGINT"},
    "subscriptions": {"subscription_id": "TEXT", "customer_id": "TEXT", "plan_id": "TEXT", "product_id": "TEXT",
                      "billing_model": "TEXT", "seats": "BIGINT", "drift_status": "TEXT", "drift_found_at": "TEXT"},
    "customers": {"customer_id": "TEXT", "partner_id": "TEXT", "distributor_id": "TEXT"},
    "migrations": {"request_id": "TEXT", "customer_id": "TEXT", "outcome": "TEXT"},
    "deadletters": {"reason": "TEXT", "seq": "BIGINT"},
    "bulks": {"bulk_id": "TEXT", "partner_id": "TEXT", "status": "TEXT", "seq": "BIGINT"},
}
STATUS = "status"  # one row per process role (e.g. "vendor": the leading outbox's limiter), not a read model
INDEXES = {"operations": ["operation_id", "customer_id", "status", "seq"], "subscriptions": ["customer_id", "drift_status"],
           "customers": ["customer_id", "partner_id", "distributor_id"], "migrations": ["customer_id"],
           "bulks": ["bulk_id", "seq"]}


def _column(value: Any) -> Any:
    # The contract refuses U+0000 in every identifier and text, but a store written by an older
    # version may hold one, and PostgreSQL text cannot: a row that cannot be written would stop
    # the read models for good. The document keeps the exact value (JSON escapes it).
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


class ReadModelTables:
    """SQL shared by both backends; placeholders are written `?` and adapted per backend."""

    placeholder = "?"
    prefix = "rm"
    if_not_exists = ""  # PostgreSQL's, for two processes starting at once; SQLite has none

    def table(self, name: str) -> str:
        return self.table_name(name)

    def table_name(self, name: str) -> str:
        """The table's own name, as the catalog lists it (`table` qualifies it where a schema does)."""
        return f"{self.prefix}_{name}"

    def index_name(self, name: str, column: str) -> str:
        return f"{self.prefix}_{name}_{column}"

    @staticmethod
    def row_columns(name: str) -> list[str]:
        """A read model's columns in the order its rows are written: id, indexed columns, document."""
        return ["id", *TABLES[name], "doc"]

    def ddl_tables_only(self) -> list[str]:
        """The tables; their indexes follow in `add_missing_columns`, once every column is there."""
        statements = []
        for name, columns in TABLES.items():
            cols = ", ".join(f"{c} {t}" for c, t in columns.items())
            statements.append(f"CREATE TABLE IF NOT EXISTS {self.table(name)} (id TEXT PRIMARY KEY, {cols}, doc TEXT NOT NULL)")
        statements.append(f"CREATE TABLE IF NOT EXISTS {self.table(STATUS)} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        return statements

    # -- what a process says about itself now, for the dashboard (no event behind it: `replay` leaves it) --
    def put_status(self, name: str, doc: Mapping[str, Any]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self.sql(f"INSERT INTO {self.table(STATUS)} (id, doc) VALUES (?, ?) "
                                    "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"), (name, dump(dict(doc))))

    def status(self, name: str) -> dict[str, Any] | None:
        rows = self.fetch(f"SELECT doc FROM {self.table(STATUS)} WHERE id = ?", [name])
        return json.loads(rows[0]["doc"]) if rows else None

    def index_ddl(self, name: str, drop: bool = False) -> list[str]:
        """The table's secondary indexes: made, or dropped (a rebuild makes them once it has
        written every row, which is faster than keeping them up to date row by row)."""
        return [f"DROP INDEX IF EXISTS {self.index(self.index_name(name, column))}" if drop else
                f"CREATE INDEX IF NOT EXISTS {self.index_name(name, column)} ON {self.table(name)} ({column})"
                for column in INDEXES.get(name, [])]

    def index(self, name: str) -> str:
        """An index's name as DROP INDEX finds it (made beside its table)."""
        return name

    def set_indexes(self, present: bool) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            for name in TABLES:
                for statement in self.index_ddl(name, drop=not present):
                    cursor.execute(statement)

    def add_missing_columns(self, cursor: Any, present: dict[str, set[str]]) -> None:
        """Read models written by an earlier version lack the columns added since (the tenant's
        ids on customers): add them, filled from each row's document, which always held them."""
        for name, columns in TABLES.items():
            for column, kind in columns.items():
                if column not in present[name]:
                    cursor.execute(f"ALTER TABLE {self.table(name)} ADD COLUMN {self.if_not_exists}{column} {kind}")
                    cursor.execute(f"UPDATE {self.table(name)} SET {column} = {self.json_field('doc', column)}")
            for statement in self.index_ddl(name):
                cursor.execute(statement)

    def json_field(self, doc: str, key: str) -> str:
        raise NotImplementedError

    def sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    def upsert_sql(self, name: str, source: str | None = None) -> str:
        """An upsert of a row given as parameters, or of the rows `source` selects."""
        columns = self.row_columns(name)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        source = source or self.sql(f"VALUES ({', '.join('?' for _ in columns)})")
        return f"INSERT INTO {self.table(name)} ({', '.join(columns)}) {source} ON CONFLICT (id) DO UPDATE SET {updates}"

    def row_params(self, name: str, row_id: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = [row.get(c) for c in TABLES[name]]
        # One C-level scan for the rare U+0000 (its repr shows it escaped; a false alarm only costs
        # the slow path) instead of a call per value: those calls were a quarter of the projection's
        # calls (cProfile, `bench.hot_path`).
        if "\\x00" in repr(values):
            values = [_column(v) for v in values]
        return (row_id, *values, dump(row["doc"]))

    # Both datastores hand out DB-API cursors from `transaction()`, and both tracking
    # recorders insert tracking on such a cursor: one implementation serves both.
    datastore: Any
    _insert_tracking: Any  # from the library's tracking recorder each subclass also inherits

    def write(self, rows: dict[str, dict[str, dict[str, Any]]], tracking: Tracking) -> None:
        """The rows of one batch and the position they came from, in one transaction."""
        with self.datastore.transaction(commit=True) as cursor:
            self._upsert(cursor, rows)
            self._insert_tracking(cursor, tracking)

    def write_rows(self, rows: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Rows without a position: a rebuild's, whose position is recorded when it has ended."""
        with self.datastore.transaction(commit=True) as cursor:
            self._upsert(cursor, rows)

    def _upsert(self, cursor: Any, rows: dict[str, dict[str, dict[str, Any]]]) -> None:
        # Tables and rows in one fixed order: two processes projecting overlapping slices
        # (several `coterm run`, `coterm serve`) then wait for each other instead of
        # deadlocking on PostgreSQL's row locks; the later one's tracking insert fails.
        for name in sorted(rows):
            changes = rows[name]
            if changes:
                self._upsert_rows(cursor, name, [self.row_params(name, i, changes[i]) for i in sorted(changes)])

    def _upsert_rows(self, cursor: Any, name: str, params: list[tuple[Any, ...]]) -> None:
        cursor.executemany(self.upsert_sql(name), params)

    def docs_of(self, name: str, row_ids: list[str]) -> list[tuple[str, str]]:
        """(id, doc) of the rows of `row_ids` that exist, 500 ids a query."""
        found: list[tuple[str, str]] = []
        for i in range(0, len(row_ids), 500):
            part = row_ids[i : i + 500]
            statement = f"SELECT id, doc FROM {self.table(name)} WHERE id IN ({','.join('?' * len(part))})"
            found.extend((r["id"], r["doc"]) for r in self.fetch(statement, part))
        return found

    def fetch(self, statement: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        # A value asked for as it is stored (`_column`): PostgreSQL refuses a parameter holding U+0000.
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.sql(statement), [_column(p) for p in params])
            return [dict(row) for row in cursor.fetchall()]


class SQLiteReadModels(ReadModelTables, SQLiteTrackingRecorder):
    def __init__(self, datastore: Any, prefix: str = "rm") -> None:
        self.prefix = prefix  # before the base class builds its CREATE statements
        super().__init__(datastore)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.ddl_tables_only()]

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            present = {}
            for name in TABLES:
                cursor.execute(f"PRAGMA table_info({self.table(name)})")
                present[name] = {row[1] for row in cursor.fetchall()}
            self.add_missing_columns(cursor, present)

    def json_field(self, doc: str, key: str) -> str:
        return f"json_extract({doc}, '$.{key}')"

    def drop(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for name in (*TABLES, STATUS):
                c.execute(f"DROP TABLE IF EXISTS {self.table(name)}")
            c.execute("DELETE FROM tracking WHERE application_name = ? OR application_name LIKE ?",
                      (f"{self.prefix}.projection", f"{self.prefix}.projection.%"))


class PostgresReadModels(ReadModelTables, PostgresTrackingRecorder):
    placeholder = "%s"
    if_not_exists = "IF NOT EXISTS "

    def table(self, name: str) -> str:
        return f'"{self.datastore.schema}".{self.table_name(name)}'

    def index(self, name: str) -> str:
        return f'"{self.datastore.schema}".{name}'

    def __init__(self, datastore: Any, prefix: str = "rm") -> None:
        self.prefix = prefix
        super().__init__(datastore, tracking_table_name="coterm_readmodel_tracking")
        self.sql_create_statements.extend(SQL(statement) for statement in self.ddl_tables_only())  # type: ignore[arg-type]

    def create_table(self) -> None:
        # Read models made already (every process but the first opens them): no DDL. `CREATE
        # INDEX IF NOT EXISTS` locks its table even when the index is there, and a process
        # opening them beside a writer of two read models deadlocked with it (the bench's harness
        # beside `coterm run`'s read-model process; `coterm serve` starting would do the same).
        if self._made():
            return
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            present = self._columns(cursor)
            self.add_missing_columns(cursor, {name: present.get(self.table_name(name), set()) for name in TABLES})

    def _columns(self, cursor: Any) -> dict[str, set[str]]:
        cursor.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
                       (self.datastore.schema,))
        present: dict[str, set[str]] = {}
        for row in cursor.fetchall():
            present.setdefault(row["table_name"], set()).add(row["column_name"])
        return present

    def _made(self) -> bool:
        """Whether every table, column and index is there (catalog reads, which take no lock)."""
        with self.datastore.transaction(commit=False) as cursor:
            present = self._columns(cursor)
            cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (self.datastore.schema,))
            indexes = {row["indexname"] for row in cursor.fetchall()}
        tables = {self.table_name(name): set(self.row_columns(name)) for name in TABLES}
        tables[self.table_name(STATUS)] = {"id", "doc"}
        tables[self.tracking_table_name] = {"application_name", "notification_id"}
        return (all(columns <= present.get(table, set()) for table, columns in tables.items())
                and all(self.index_name(name, column) in indexes for name, columns in INDEXES.items() for column in columns))

    def json_field(self, doc: str, key: str) -> str:
        return f"({doc}::jsonb ->> '{key}')"

    def _upsert_rows(self, cursor: Any, name: str, params: list[tuple[Any, ...]]) -> None:
        """A table's rows in one statement, each column one array in binary (`unnest`), in the
        base's order: psycopg's `executemany` spent about 20 µs of Python a row, this about 5."""
        cursor.execute(self.unnest_upsert_sql(name), [list(column) for column in zip(*params, strict=True)])

    def docs_of(self, name: str, row_ids: list[str]) -> list[tuple[str, str]]:
        """As the base's, in one query of one binary list: a statement whose text is the same for
        any number of ids is parsed once (psycopg split each `IN (...)` of another length again)."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT id, doc FROM {self.table(name)} WHERE id = ANY(%b)", ([_column(i) for i in row_ids],))
            return [(row["id"], row["doc"]) for row in cursor.fetchall()]

    def unnest_upsert_sql(self, name: str) -> str:
        kinds = ["TEXT", *TABLES[name].values(), "TEXT"]
        return self.upsert_sql(name, f"SELECT * FROM unnest({', '.join(f'%b::{kind}[]' for kind in kinds)})")

    def write_rows(self, rows: dict[str, dict[str, dict[str, Any]]]) -> None:
        """A rebuild's rows, each written once into tables that do not hold it yet: `COPY`, not
        an upsert per row."""
        with self.datastore.transaction(commit=True) as cursor:
            for name in sorted(rows):
                columns = ", ".join(self.row_columns(name))
                with cursor.copy(f"COPY {self.table(name)} ({columns}) FROM STDIN") as copy:
                    for row_id, row in rows[name].items():
                        copy.write_row(self.row_params(name, row_id, row))

    def drop(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for name in (*TABLES, STATUS):
                curs.execute(f"DROP TABLE IF EXISTS {self.table(name)}")
            curs.execute(f'DELETE FROM "{self.datastore.schema}".{self.tracking_table_name} '
                         "WHERE application_name = %s OR application_name LIKE %s",
                         (f"{self.prefix}.projection", f"{self.prefix}.projection.%"))
