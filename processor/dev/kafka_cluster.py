"""Apache Kafka itself, from its jars on Maven Central, for tests, storms and benchmarks.

`deploy/kafka/pom.xml` names the version; `mvn dependency:copy-dependencies` fetches the broker and
its dependencies once into a cache outside the tree (`COTERM_KAFKA_CACHE`, default
`~/.cache/coterm`). Each node runs in KRaft combined mode (broker and controller in one JVM) on
free loopback ports with its data in a temporary directory: one node for the test suite, three
for the storm's broker failures. Nothing here is tuned to make coterm pass: the group settings
are Apache Kafka's defaults (`group.min.session.timeout.ms` 6 s among them), except the initial
rebalance delay, which only makes a new group's first join wait 3 s.
"""

import base64
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from processor.dev.broker import free_port

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or the jars could not be fetched: the caller may fall back to Tansu."""


def kafka_version(pom: Path = POM) -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not found:
        raise KafkaUnavailable(f"{pom} names no <kafka.version>")
    return found.group(1).strip()


def missing_tools() -> list[str]:
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def jars(version: str | None = None) -> Path:
    """The directory holding the broker's jars, fetched once (under a lock: xdist workers and
    the storm's pytest may ask at the same moment)."""
    version = version or kafka_version()
    cache = Path(os.environ.get("COTERM_KAFKA_CACHE") or Path.home() / ".cache" / "coterm")
    target = cache / f"kafka-{version}"
    done = target / ".complete"
    if done.exists():
        return target
    if missing := missing_tools():
        raise KafkaUnavailable(f"Apache Kafka needs {' and '.join(missing)} on PATH")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"kafka-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return target
        fetch = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-Dkafka.version={version}",
             f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
            capture_output=True, text=True, timeout=600)
        if fetch.returncode != 0:
            raise KafkaUnavailable(f"mvn could not fetch Apache Kafka {version}: "
                                   f"{(fetch.stdout + fetch.stderr).strip()[-800:]}")
        done.touch()
    return target


def cluster_id() -> str:
    """Kafka's own form: the UUID's 16 bytes in URL-safe base64 without padding; like Kafka's
    Uuid.randomUuid, never one starting with '-' (a command line would read it as an option)."""
    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not made.startswith("-"):
            return made


LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class KafkaCluster:
    """`brokers` KRaft nodes, each broker and controller; a context manager that stops them."""

    brokers: int = 1
    version: str = field(default_factory=kafka_version)
    heap: str = "768m"
    settings: dict[str, str] = field(default_factory=dict)  # extra server.properties for every node
    # For a test session: the JIT's first tier only and the serial collector start the broker in
    # 3 s instead of 4.5 and spend 40% less CPU on a session's light load (measured: 20 group
    # joins); storms and benchmarks keep the JVM's defaults, as a deployment runs it.
    quick: bool = False
    nodes: list[Node] = field(default_factory=list)
    started_in_s: float = 0.0

    def __post_init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="coterm-kafka-")
        self._cluster_id = cluster_id()
        self.nodes = [Node(i + 1, free_port(), free_port(), Path(self._tmp.name) / f"node-{i + 1}")
                      for i in range(self.brokers)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def _properties(self, node: Node) -> str:
        replicas = min(3, self.brokers)
        values = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.quorum.voters": ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes),
            "log.dirs": str(node.directory / "data"),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "10",  # 50 by default: only the first group's join is slower
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min(2, replicas)),
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min(2, replicas)),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",  # coterm creates its topics; a typo must not make one
            **self.settings,
        }
        return "".join(f"{k}={v}\n" for k, v in values.items())

    def _java(self, node: Node, main: str, *args: str) -> list[str]:
        jvm = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"] if self.quick else ["-XX:+UseG1GC"]
        return ["java", f"-Xmx{self.heap}", "-Xms128m", *jvm, "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={node.directory}", "-cp", f"{self._jars}/*", main, *args]

    def start(self, timeout_s: float = 120.0) -> "KafkaCluster":
        began = time.monotonic()
        self._jars = jars(self.version)
        formats = []
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            (node.directory / "server.properties").write_text(self._properties(node))
            (node.directory / "log4j2.properties").write_text(LOG4J.format(log=node.log))
            formats.append(subprocess.Popen(
                self._java(node, "kafka.tools.StorageTool", "format", f"--cluster-id={self._cluster_id}",
                           "-c", str(node.directory / "server.properties"), "--ignore-formatted"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for node, fmt in zip(self.nodes, formats, strict=True):
            out, _ = fmt.communicate(timeout=120)
            if fmt.returncode != 0:
                raise RuntimeError(f"kafka-storage format failed for node {node.node_id}: {out.decode()[-800:]}")
        for node in self.nodes:
            self._launch(node)
        self.wait_ready(timeout_s - (time.monotonic() - began))
        self.started_in_s = time.monotonic() - began
        return self

    def _launch(self, node: Node) -> None:
        node.process = subprocess.Popen(self._java(node, "kafka.Kafka", str(node.directory / "server.properties")),
                                        stdout=open(node.directory / "stdout.log", "ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every running node is a live broker in the cluster's metadata."""
        deadline = time.monotonic() + max(timeout_s, 1.0)
        expected = {n.node_id for n in self.nodes if n.running()}
        last = "no answer"
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None and node.node_id in expected:
                    raise RuntimeError(f"Kafka node {node.node_id} exited with {node.process.returncode}: "
                                       f"{self.tail(node)}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000,
                                         bootstrap_timeout_ms=3000)
                try:
                    brokers = {b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")}
                finally:
                    admin.close()
                if brokers >= expected:
                    return
                last = f"brokers {sorted(brokers)} of {sorted(expected)}"
            except KafkaError as error:
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.3)
        raise RuntimeError(f"Apache Kafka did not answer within {timeout_s:.0f}s ({last}); {self.tail(self.nodes[0])}")

    def tail(self, node: Node, lines: int = 15) -> str:
        for path in (node.log, node.directory / "stdout.log"):
            if path.exists() and path.stat().st_size:
                return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    # -- faults, for the storm ----------------------------------------------------------------
    def kill(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=30)

    def restart(self, node_id: int) -> None:
        node = self.node(node_id)
        self.kill(node_id)
        self._launch(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.running():
                node.process.terminate()  # type: ignore[union-attr]
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
        self._tmp.cleanup()

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":  # `python -m processor.dev.kafka_cluster [N]`: a cluster to point things at
    import sys

    with KafkaCluster(brokers=int(sys.argv[1]) if len(sys.argv) > 1 else 1) as running:
        print(f"Apache Kafka {running.version}, {running.brokers} node(s), started in {running.started_in_s:.1f}s: "
              f"bootstrap {running.bootstrap} (Ctrl-C stops)", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
