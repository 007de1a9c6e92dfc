"""Open the event store named by COTERM_STORE: a SQLite path or a postgresql:// URL."""

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
from psycopg import sql

from processor.settings import SettingsError, store_problem
from processor.store.factories import POSTGRES, SQLITE
from processor.store.stored_orders import StoredOrders
from projections.projection import read_models

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlite_path(store: str) -> Path | None:
    """The file a SQLite store location names (None: a PostgreSQL URL)."""
    return None if store.startswith(POSTGRES_SCHEMES) else Path(store)


def store_env(store: str) -> dict[str, str]:
    """eventsourcing's environment for a store location.

    A `?schema=NAME` query on a PostgreSQL URL keeps coterm's tables in that schema
    (created if missing), so that several stores can share one database.
    """
    if sqlite_path(store) is None:
        url = urlparse(store)
        if not url.path.strip("/"):
            raise SettingsError(f"COTERM_STORE={store!r} names no database")
        query = parse_qs(url.query)
        env = {
            "PERSISTENCE_MODULE": POSTGRES,
            "POSTGRES_DBNAME": unquote(url.path.lstrip("/")),
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
            "POSTGRES_CONNECT_TIMEOUT": "10",
            # A process paused (SIGSTOP, a frozen VM) inside a transaction holds its locks, the
            # event table's insert lock among them, and with it every writer: the server ends
            # such a session after 2 s idle in a transaction (the library's default: 5 s).
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "2",
            "POSTGRES_POOL_SIZE": "4",
        }
        return env
    problem = store_problem(store)
    if problem:
        raise SettingsError(f"COTERM_STORE={store!r}: {problem}")
    return {"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(Path(store)), "SQLITE_LOCK_TIMEOUT": "30"}


def is_postgres(env: dict[str, str]) -> bool:
    return env["PERSISTENCE_MODULE"] == POSTGRES


OPEN_ATTEMPTS = 5


def open_store(store: str, cache_size: int | None = None, cached: bool = True) -> StoredOrders:
    """The application on its store, with every table (events, tracking, read models) created.
    `cache_size`: aggregates its cache holds (default `StoredOrders.env`'s); `cached` False: no
    cache, every aggregate read fresh from the store, and no following of the log to keep one
    current (for occasional readers beside the hot path, e.g. reconciliation)."""
    env = store_env(store)
    if cache_size is not None:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(cache_size)
    if not cached:
        env["AGGREGATE_CACHE_MAXSIZE"] = ""  # the library's "no cache"
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        app: StoredOrders | None = None
        try:
            with _ddl_lock(env):
                if is_postgres(env) and env["POSTGRES_SCHEMA"] != "public":
                    _create_schema(env)
                app = StoredOrders(env=env)
                read_models(app)
            return app
        except Exception as error:  # noqa: BLE001 - any driver error means "cannot open", said plainly
            if app is not None:
                app.close()
            # `CREATE INDEX IF NOT EXISTS` locks its table even when the index exists, so a
            # processor starting beside others that write read models can deadlock with them:
            # PostgreSQL ends one side, and a restart must not die of it. Anything else is final.
            if "deadlock detected" in str(error) and attempt < OPEN_ATTEMPTS:
                time.sleep(0.2 * attempt)
                continue
            raise SettingsError(f"cannot open the event store {redact(store)}: {error}") from error
    raise AssertionError("unreachable")


# Processors, `coterm serve` and tests often start together on a fresh store, and each creates
# the tables. PostgreSQL fails one of two sessions running the same `CREATE ... IF NOT EXISTS`
# at once ("tuple concurrently updated"); SQLite answers "database is locked" without waiting
# when a read transaction must become a write one. So they take turns: an advisory lock on
# PostgreSQL, a file lock beside the SQLite file.
_DDL_LOCK_KEY = 0x636F7465726D  # "coterm"


@contextmanager
def _ddl_lock(env: dict[str, str]) -> Iterator[None]:
    if is_postgres(env):
        with connect_postgres(env) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_DDL_LOCK_KEY,))  # released when the session closes
            yield
        return
    database = Path(env["SQLITE_DBNAME"])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".open-lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
        yield


def connect_postgres(env: dict[str, str], connect_timeout: int = 10,
                     tcp_timeout_ms: int | None = None) -> psycopg.Connection[Any]:
    """An autocommit connection to the database the store env names (outside the library's pool).
    `tcp_timeout_ms`: a statement on a database that stopped answering fails after about this long
    instead of waiting for the operating system to give up (minutes)."""
    timeouts: dict[str, Any] = {}
    if tcp_timeout_ms is not None:
        timeouts = {"tcp_user_timeout": tcp_timeout_ms, "keepalives": 1, "keepalives_idle": 1,
                    "keepalives_interval": 1, "keepalives_count": 2,
                    "options": f"-c statement_timeout={tcp_timeout_ms}"}
    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None, autocommit=True,
        connect_timeout=connect_timeout, **timeouts,
    )


def _create_schema(env: dict[str, str]) -> None:
    with connect_postgres(env) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(env["POSTGRES_SCHEMA"])))


def redact(store: str) -> str:
    url = urlparse(store)
    if url.password:
        return store.replace(f":{url.password}@", ":***@")
    return store
