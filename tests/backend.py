"""Which infrastructure the integration suite runs on (COTERM_TEST_BACKEND).

- `local` (the default): the bundled Tansu broker and the PostgreSQL at COTERM_TEST_POSTGRES.
- `containers`: Apache Kafka (KRaft) and PostgreSQL in containers started by `testcontainers`;
  it needs a Docker engine that answers, and says so plainly when none does.
The pytest header names the one in use.
"""

import os
from typing import Any

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"  # testcontainers' KRaft-capable default
POSTGRES_IMAGE = "postgres:16"


def chosen() -> str:
    value = os.environ.get("COTERM_TEST_BACKEND", "local").strip() or "local"
    if value not in ("local", "containers"):
        raise SystemExit(f"COTERM_TEST_BACKEND={value!r}: use 'local' or 'containers'")
    return value


def docker_problem() -> str | None:
    """None when a Docker engine answers; else why not."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as error:  # noqa: BLE001 - any failure means no engine to use
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


class Containers:
    """Kafka (KRaft) and PostgreSQL containers for one test session."""

    def __init__(self) -> None:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer

        self.kafka: Any = KafkaContainer(KAFKA_IMAGE).with_kraft()
        self.postgres: Any = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="coterm", dbname="test",
                                               driver=None)

    def start(self) -> "Containers":
        self.kafka.start()
        self.postgres.start()
        # The harness and the fixtures read these: every store and broker in the suite is a container's.
        os.environ["COTERM_TEST_POSTGRES"] = self.postgres.get_connection_url()
        return self

    @property
    def bootstrap(self) -> str:
        return str(self.kafka.get_bootstrap_server())

    def stop(self) -> None:
        self.kafka.stop()
        self.postgres.stop()


def header(backend: str) -> str:
    if backend == "containers":
        return f"coterm test backend: containers ({KAFKA_IMAGE} in KRaft mode, {POSTGRES_IMAGE}) via testcontainers"
    postgres = os.environ.get("COTERM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    return (f"coterm test backend: local (bundled Tansu broker, PostgreSQL at {postgres}); "
            "COTERM_TEST_BACKEND=containers runs on Kafka and PostgreSQL containers when a Docker engine answers")
