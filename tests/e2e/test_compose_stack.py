"""docker-compose.yml's coterm services, run as the file says, without Docker (none runs here):
each service's own command with its own environment, only the addresses mapped to this
machine (the compose host names `kafka` and `postgres` to the suite's broker and database, each
listening port to a free one). Two processor replicas join the group, the dashboard answers
/readyz, and a transfer published to the stack's orders topic completes. The Kafka image of the
compose file is the version the suite's broker runs (deploy/kafka/pom.xml)."""

import os
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor.dev.broker import free_port
from processor.dev.kafka_cluster import kafka_version
from tests.harness import TANSU_BOOTSTRAPS, Scenario, log_events, downgrade, seed_reference_data, upgrade
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_compose_kafka_image_is_the_version_the_suite_runs() -> None:
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def _command(service: str, ports: dict[str, str], staff_dir: Path) -> list[str]:
    """The service's command, its listening ports and its staff file's directory mapped here."""
    command = [ports.get(part, part) for part in SERVICES[service]["command"]]
    command = [part.replace("/var/lib/coterm/staff", str(staff_dir)) for part in command]
    assert command[0] == "coterm"
    return [sys.executable, "-m", "processor.cli.coterm", *command[1:]]


def _environment(service: str, mapped: dict[str, str], staff_dir: Path) -> dict[str, str]:
    env = {}
    for name, value in (SERVICES[service].get("environment") or {}).items():
        # As compose reads it with an .env that sets none of them: `${NAME:-default}` is its default.
        value = re.sub(r"\$\{\w+:?-([^}]*)\}", lambda m: m.group(1), str(value))
        for compose_value, here in mapped.items():
            value = value.replace(compose_value, here)
        env[name] = value.replace("/var/lib/coterm/staff", str(staff_dir))
    return env


def _port_of(service: str, flag: str) -> str:
    command = SERVICES[service]["command"]
    return str(command[command.index(flag) + 1])


def test_the_compose_services_run_with_their_own_settings(broker: Any, postgres_schema_store: str,
                                                          tmp_path: Path) -> None:
    if broker.bootstrap in TANSU_BOOTSTRAPS:
        pytest.skip("the compose stack runs Apache Kafka; this suite runs on the bundled broker (no Java)")
    if not broker.ours:
        pytest.skip("the stack's own topic names (orders.v1 ...) on your cluster at COTERM_TEST_KAFKA: not published to")
    store = postgres_schema_store
    compose_store = SERVICES["processor"]["environment"]["COTERM_STORE"]
    assert str(compose_store).startswith("postgresql://")
    vendor_port, dashboard_port = str(free_port()), str(free_port())
    mapped = {str(compose_store): store, "kafka:9092": broker.bootstrap,
              f"http://vendor-sim:{_port_of('vendor-sim', '--port')}": f"http://127.0.0.1:{vendor_port}"}
    staff_dir = tmp_path / "staff"
    staff_dir.mkdir()
    group = SERVICES["processor"]["environment"].get("COTERM_GROUP_ID", "coterm-processor")
    # A group and topics of the stack's own names on a broker other tests share: this test's
    # slot locks apart from theirs, and its transfer found by its operation id.
    base_env = {**os.environ, "COTERM_SLOT_DIR": str(tmp_path / "slots")}
    for name in [n for n in base_env if n.startswith("COTERM_") and n != "COTERM_SLOT_DIR"]:
        del base_env[name]  # nothing but the service's own settings
    procs: list[subprocess.Popen[bytes]] = []

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(tmp_path.glob("*.log")))

    def wait_until(condition: Any, timeout_s: float, what: str) -> None:
        try:
            wait_for(condition, timeout_s, what, interval=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{logs()}") from None

    def start(service: str, ports: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(_command(service, ports, staff_dir), env={**base_env, **_environment(service, mapped, staff_dir)},
                                stdout=open(tmp_path / log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        procs.append(proc)
        return proc

    try:
        start("vendor-sim", {_port_of("vendor-sim", "--port"): vendor_port}, "vendor.log")
        init = subprocess.run(_command("staff-init", {}, staff_dir), env={**base_env, **_environment("staff-init", mapped, staff_dir)},
                              capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, init.stderr
        replicas = int(SERVICES["processor"].get("deploy", {}).get("replicas", 1))
        metrics_ports = [str(free_port()) for _ in range(min(replicas, 2))]
        for n, port in enumerate(metrics_ports):
            start("processor", {_port_of("processor", "--metrics-port"): port}, f"processor-{n}.log")
        start("dashboard", {_port_of("dashboard", "--port"): dashboard_port}, "dashboard.log")

        def held(port: str) -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                return -1
            return len(re.findall(r'^coterm_consumer_lag_messages\{', text, re.M))


        partitions = int(SERVICES["processor"]["environment"]["COTERM_TOPIC_PARTITIONS"])
        wait_until(lambda: all(held(p) > 0 for p in metrics_ports) and sum(held(p) for p in metrics_ports) == partitions,
                   timeout_s=90, what=f"both processors holding the {partitions} partitions between them")
        assert all(p.poll() is None for p in procs), logs()
        # Static members, each under an instance id of its own (the host's slots 0 and 1 here;
        # in compose, each replica's container host name).
        instance_ids = {started["group_instance_id"] for n in range(len(metrics_ports))
                        for started in log_events(tmp_path / f"processor-{n}.log", "processor.started")}
        assert len(instance_ids) == len(metrics_ports) and None not in instance_ids, instance_ids

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, timeout_s=60, what="the dashboard's /readyz")

        # The stack's own topics and group, as its processors created and joined them.
        stack = Scenario(broker.bootstrap, store, f"http://127.0.0.1:{vendor_port}", tag=uuid.uuid4().hex[:8])
        stack.with_settings(topic_orders="orders.v1", topic_results="orders.results.v1", group_id=group)
        customer, op = f"cs-{uuid.uuid4().hex[:6]}", f"compose-{uuid.uuid4().hex[:6]}"
        seed_reference_data(stack, customer=customer)
        stack.send("transfer.downgrade_ordered", downgrade(op, customer=customer))
        stack.send("transfer.upgrade_ordered", upgrade(op, customer=customer))
        wait_until(lambda: any(r["type"] == "transfer.completed" for r in stack.results_for(op)),
                   timeout_s=90, what=f"transfer {op} completed through the stack")
        assert [r["type"] for r in stack.results_for(op)] == ["transfer.completed"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
