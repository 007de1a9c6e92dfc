"""Which broker and database the suite runs on; the pytest header names them.

Broker, `COTERM_TEST_BROKER`:
- `kafka`: Apache Kafka itself, from its Maven Central jars (`processor/dev/kafka_cluster.py`,
  version in `deploy/kafka/pom.xml`), one KRaft broker per test session, started by pytest's
  controlling process and shared by every xdist worker.
- `tansu`: the bundled Tansu broker, the one `make demo` runs.
- `auto` (the default): `kafka` where `java` and `mvn` are on PATH, else `tansu`, saying why.
- `COTERM_TEST_KAFKA=host:port[,...]`: your own cluster; nothing is started.
`COTERM_REQUIRE_KAFKA=1` (CI) turns a missing Apache Kafka into a failed session, never Tansu.

`COTERM_TEST_BACKEND=containers`: Apache Kafka (the same version) and PostgreSQL in containers
started by `testcontainers` in the controlling process; it needs a Docker engine that answers.

PostgreSQL: `COTERM_TEST_POSTGRES` (default postgresql://postgres@127.0.0.1:5432/test), read when
a test asks, not at import, so a backend that starts its own database can set it first.
"""

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_IMAGE = "postgres:16"


def postgres_url() -> str:
    return os.environ.get("COTERM_TEST_POSTGRES") or POSTGRES_DEFAULT


def postgres_problem() -> str | None:
    """None when the test database answers; else why not."""
    import psycopg

    try:
        psycopg.connect(postgres_url(), connect_timeout=3).close()
    except psycopg.Error as error:
        return str(error).strip()
    return None


def postgres_store() -> Iterator[str]:
    """A store in a schema of its own on the test database, dropped afterwards; a skip (a failure
    under COTERM_REQUIRE_POSTGRES) when no PostgreSQL answers."""
    import psycopg
    import pytest

    problem = postgres_problem()
    url = postgres_url()
    if problem:
        if os.environ.get("COTERM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (COTERM_REQUIRE_POSTGRES) but {url} failed: {problem}")
        pytest.skip(f"no PostgreSQL at {url}: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{url}?schema={schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Session:
    """What the controlling process started, handed to each xdist worker as plain values."""

    kind: str  # "kafka", "tansu", "external", "containers"
    bootstrap: str = ""  # empty for tansu: each process starts its own (it lives in memory)
    detail: str = ""
    postgres: str = ""
    ours: bool = True  # started for this run (not a cluster of yours at COTERM_TEST_KAFKA)


def chosen_broker() -> str:
    if os.environ.get("COTERM_TEST_BACKEND", "").strip() == "containers":
        return "containers"
    if os.environ.get("COTERM_TEST_KAFKA", "").strip():
        return "external"
    value = os.environ.get("COTERM_TEST_BROKER", "auto").strip() or "auto"
    if value not in ("auto", "kafka", "tansu"):
        raise SystemExit(f"COTERM_TEST_BROKER={value!r}: use 'kafka', 'tansu' or 'auto'")
    return value


class Started:
    """The controlling process's infrastructure: started once, stopped at the session's end."""

    def __init__(self) -> None:
        self.cluster: Any = None
        self.containers: list[Any] = []

    def start(self) -> Session:
        kind = chosen_broker()
        required = bool(os.environ.get("COTERM_REQUIRE_KAFKA"))
        if kind == "external":
            bootstrap = os.environ["COTERM_TEST_KAFKA"].strip()
            # `make test` (tests/run_suite.py) starts Apache Kafka once for both its sessions and says so.
            started_for_us = os.environ.get("COTERM_TEST_KAFKA_DETAIL")
            return Session("external", bootstrap, started_for_us or f"your Kafka at {bootstrap} (COTERM_TEST_KAFKA)",
                           ours=bool(started_for_us))
        if kind == "containers":
            return self._containers()
        if kind == "tansu":
            if required:
                raise SystemExit("COTERM_REQUIRE_KAFKA is set but COTERM_TEST_BROKER=tansu")
            return Session("tansu", detail="bundled Tansu broker (COTERM_TEST_BROKER=tansu)")
        from processor.dev.kafka_cluster import KafkaCluster, KafkaUnavailable

        try:
            self.cluster = KafkaCluster(brokers=1, quick=True).start()
        except KafkaUnavailable as why:
            if required or kind == "kafka":
                raise SystemExit(f"Apache Kafka is required but unavailable: {why}") from None
            return Session("tansu", detail=f"bundled Tansu broker, because Apache Kafka is unavailable: {why}")
        return Session("kafka", self.cluster.bootstrap,
                       f"Apache Kafka {self.cluster.version} (KRaft, 1 broker, from Maven Central jars) at "
                       f"{self.cluster.bootstrap}, started in {self.cluster.started_in_s:.1f}s")

    def _containers(self) -> Session:
        problem = docker_problem()
        if problem:
            raise SystemExit(f"COTERM_TEST_BACKEND=containers needs a Docker engine that answers: {problem}")
        from testcontainers.core.container import DockerContainer
        from testcontainers.community.postgres import PostgresContainer

        from processor.dev.broker import free_port
        from processor.dev.kafka_cluster import kafka_version

        version = kafka_version()
        port = free_port()  # mapped 1:1, so the advertised listener is the address the host dials
        kafka = (DockerContainer(f"apache/kafka:{version}").with_bind_ports(port, port)
                 .with_env("KAFKA_NODE_ID", "1").with_env("KAFKA_PROCESS_ROLES", "broker,controller")
                 .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
                 .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
                 .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
                 .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
                 .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
                 .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
                 .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"))
        postgres = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="coterm", dbname="test", driver=None)
        began = time.monotonic()
        kafka.start()
        self.containers.append(kafka)
        postgres.start()
        self.containers.append(postgres)
        bootstrap = f"127.0.0.1:{port}"
        from processor.kafka_io import ensure_topics

        ensure_topics(bootstrap, [], partitions=1, timeout_s=90)  # creates nothing: waits until the broker answers
        return Session("containers", bootstrap,
                       f"containers: apache/kafka:{version} (KRaft) and {POSTGRES_IMAGE} via testcontainers, "
                       f"started in {time.monotonic() - began:.1f}s", postgres=postgres.get_connection_url())

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        for container in reversed(self.containers):
            container.stop()


def docker_problem() -> str | None:
    """None when a Docker engine answers; else why not."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as error:  # noqa: BLE001 - any failure means no engine to use
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


def to_worker(session: Session) -> dict[str, str]:
    return asdict(session)


def from_worker(values: dict[str, str]) -> Session:
    return Session(**values)


def header(session: Session) -> str:
    postgres = session.postgres or postgres_url()
    required = [name for name in ("COTERM_REQUIRE_KAFKA", "COTERM_REQUIRE_POSTGRES", "COTERM_REQUIRE_BROWSER")
                if os.environ.get(name)]
    return (f"coterm broker: {session.detail}\ncoterm PostgreSQL: {postgres}"
            + (f"\ncoterm requires: {', '.join(required)}" if required else ""))
