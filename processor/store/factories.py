"""The library's infrastructure factories, building coterm's process recorders: what
`PERSISTENCE_MODULE` names (`store_env`), so the application gets them by injection."""

from eventsourcing.persistence import ProcessRecorder
from eventsourcing.popo import POPOFactory
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

from processor.store.recorders import (
    POPOSeenRecorder,
    PostgresSeenRecorder,
    SQLiteSeenRecorder,
)


class SQLiteStore(SQLiteFactory):
    process_recorder_class = SQLiteSeenRecorder


class PostgresStore(PostgresFactory):
    process_recorder_class = PostgresSeenRecorder


class MemoryStore(POPOFactory):
    """In memory, for unit tests (the library's POPO factory takes no recorder class)."""

    def process_recorder(self) -> ProcessRecorder:
        return POPOSeenRecorder()


SQLITE = "processor.store.factories:SQLiteStore"
POSTGRES = "processor.store.factories:PostgresStore"
MEMORY = "processor.store.factories:MemoryStore"
