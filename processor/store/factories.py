"""The library's infrastructure factories, building coterm's process recorders: what
`PERSISTENCE_MODULE` names (`store_env`), so the application gets them by injection."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import ProcessRecorder
from eventsourcing.popo import POPOFactory
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteFactory

from processor.store.postgres_recorder import PostgresSeenRecorder
from processor.store.recorders import POPOSeenRecorder, SQLiteSeenRecorder


class _NormalSyncPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        # WAL with synchronous=NORMAL: a commit no longer waits for the disk (fsync at checkpoints).
        # A crash of the process loses nothing; a power cut may lose the last commits, which coterm
        # re-applies from Kafka (their positions went with them) and re-sends under the same
        # Idempotency-Key, so their effects still happen once.
        connection._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        # Up to 64 MiB of pages cached per connection, not SQLite's 2 MiB: with a million events
        # the indexes a transfer reads (seen message ids, events by aggregate) outgrow 2 MiB, and
        # each page missed is a read from the OS. 8% less CPU per transfer on such a store
        # (`bench.hot_path` on a kept 1,000,000-event store, 128 MiB against the default, paired).
        connection._sqlite_conn.execute("PRAGMA cache_size=-65536")
        return connection


class SQLiteStore(SQLiteFactory):
    process_recorder_class = SQLiteSeenRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        if not self.datastore.pool.is_sqlite_memory_mode:
            self.datastore.pool.__class__ = _NormalSyncPool  # the library's pool, with one setting added


class _ReadingDatastore(PostgresDatastore):
    @contextmanager
    def transaction(self, *, commit: bool = False) -> Iterator[Any]:
        """`commit=False` (a read): the connection's own autocommit statements, as the library's
        reads run, not a transaction rolled back. Such a transaction took three round trips for
        one query (BEGIN, the query, ROLLBACK), and a fourth: psycopg takes a ROLLBACK for a
        sign that objects may have changed and forgets every statement prepared on the
        connection (`DEALLOCATE ALL`), the library's too, so each was parsed and planned again.
        Under READ COMMITTED (PostgreSQL's default, which the library keeps) each statement of a
        transaction sees its own snapshot anyway, so reads see what they saw before. Every
        caller of `commit=False`, coterm's and the library's, reads only, with no lock or
        `SET LOCAL` (those open their own transaction: `select_rows_by_aggregate`)."""
        if commit:  # a write: the library's own transaction
            with super().transaction(commit=True) as cursor:
                yield cursor
        else:
            with self.get_connection() as conn:
                yield conn.cursor()


class PostgresStore(PostgresFactory):
    process_recorder_class = PostgresSeenRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.datastore.__class__ = _ReadingDatastore  # the library's datastore, its reads without a transaction


class MemoryStore(POPOFactory):
    """In memory, for unit tests (the library's POPO factory takes no recorder class)."""

    def process_recorder(self) -> ProcessRecorder:
        return POPOSeenRecorder()


SQLITE = "processor.store.factories:SQLiteStore"
POSTGRES = "processor.store.factories:PostgresStore"
MEMORY = "processor.store.factories:MemoryStore"
