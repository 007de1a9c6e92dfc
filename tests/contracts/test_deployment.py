"""docker-compose.yml and the Dockerfile agree with what coterm reads: its variables, its
commands, the services its URLs name, the staff file it loads, the ports its health checks ask."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from processor.cli.coterm import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
COTERM_SERVICES = {name: s for name, s in SERVICES.items() if s.get("build")}


def variables_coterm_reads() -> set[str]:
    from processor.settings import Settings

    return {f"COTERM_{name.upper()}" for name in Settings.model_fields}


def test_every_variable_set_for_coterm_is_one_it_reads_and_the_readme_documents() -> None:
    known = variables_coterm_reads()
    readme = (ROOT / "README.md").read_text()
    assert known and all(f"`{name}`" in readme or name.startswith("COTERM_TOPIC_") for name in known)
    for name, service in COTERM_SERVICES.items():
        for variable in service.get("environment", {}):
            assert variable in known, f"{name} sets {variable}, which coterm does not read"


def test_every_command_is_a_coterm_command_that_parses() -> None:
    parser = build_parser()
    for name, service in COTERM_SERVICES.items():
        command = service["command"]
        assert command[0] == "coterm", name
        parser.parse_args(command[1:])  # exits (SystemExit) on an unknown command or option


def test_urls_name_services_of_the_stack_on_the_ports_they_listen_on() -> None:
    processor = SERVICES["processor"]["environment"]
    host, port = processor["COTERM_KAFKA_BOOTSTRAP"].split(":")
    assert host in SERVICES and f"INTERNAL://{host}:{port}" in SERVICES[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    store = re.match(r"postgresql://(\w+):(\$\{\w+:\?[^}]*\})@([\w-]+):(\d+)/(\w+)$", processor["COTERM_STORE"])
    assert store is not None, processor["COTERM_STORE"]  # the password comes from .env, required, no default
    user, password, pg_host, _, database = store.groups()
    assert pg_host in SERVICES and SERVICES[pg_host]["environment"] == {
        "POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": database}
    assert SERVICES["dashboard"]["environment"]["COTERM_STORE"] == processor["COTERM_STORE"]
    vendor = re.match(r"http://([\w-]+):(\d+)$", processor["COTERM_VENDOR_URL"])
    assert vendor is not None and vendor.group(1) in SERVICES
    assert SERVICES[vendor.group(1)]["command"][-1] == vendor.group(2)  # --port


def test_the_first_start_writes_the_staff_file_the_dashboard_loads() -> None:
    dashboard, init = SERVICES["dashboard"], SERVICES["staff-init"]
    # `${COTERM_STAFF_FILE-default}`: the default unless .env sets it (empty: an issuer alone).
    path = re.sub(r"\$\{COTERM_STAFF_FILE-([^}]*)\}", r"\1", dashboard["environment"]["COTERM_STAFF_FILE"])
    assert path.startswith("/var/lib/coterm/staff/")
    command = init["command"]
    assert command[1:3] == ["staff", "add"] and command[command.index("--file") + 1] == path
    assert "--if-absent" in command  # a restart of the stack changes nothing
    build_parser().parse_args(command[1:])

    def volume_of(service: dict) -> dict[str, str]:  # type: ignore[type-arg]
        return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}

    directory = str(Path(path).parent)
    assert volume_of(init)[directory] == volume_of(dashboard)[directory] in COMPOSE["volumes"]
    assert dashboard["volumes"][0].endswith(":ro")  # the dashboard only reads it
    assert dashboard["depends_on"]["staff-init"] == {"condition": "service_completed_successfully"}
    assert f"mkdir -p {directory} && chown coterm:coterm {directory}" in (ROOT / "Dockerfile").read_text()


def test_nothing_has_a_default_password_and_only_loopback_ports_are_published() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name, service in SERVICES.items():
        for variable, value in (service.get("environment") or {}).items():
            if "PASSWORD" in variable:
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}: {variable} has a default"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
    assert "ports" not in SERVICES["postgres"]
    assert "coterm@" not in text and ":coterm@" not in text  # no password written in the file
    example = (ROOT / "deploy" / "env.example").read_text()
    for variable in set(re.findall(r"\$\{(\w+):\?", text)):
        assert f"\n{variable}=\n" in "\n" + example, f"{variable} is not in deploy/env.example"


def test_partitions_agree_between_compose_and_coterm() -> None:
    from processor.settings import Settings

    partitions = Settings.model_fields["topic_partitions"].default
    assert int(SERVICES["processor"]["environment"]["COTERM_TOPIC_PARTITIONS"]) == partitions == 6
    assert int(SERVICES["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]) == partitions


def test_health_checks_ask_the_ports_the_commands_listen_on() -> None:
    for name, service in COTERM_SERVICES.items():
        if service.get("restart") == "no":
            continue  # a one-shot step has nothing to check
        check = " ".join(service["healthcheck"]["test"])
        port = re.search(r"127\.0\.0\.1:(\d+)/", check)
        assert port is not None, name
        command = service["command"]
        flag = "--metrics-port" if command[1] == "run" else "--port"
        assert command[command.index(flag) + 1] == port.group(1), name
        if command[1] == "run":
            assert command[command.index("--metrics-host") + 1] == "0.0.0.0"  # reachable from outside the container


def test_dependencies_wait_for_health_and_everything_restarts() -> None:
    for name, service in SERVICES.items():
        one_shot = service.get("restart") == "no"  # staff-init: runs once at start
        assert service.get("restart") == "unless-stopped" or one_shot, name
        for dependency, condition in (service.get("depends_on") or {}).items():
            if SERVICES[dependency].get("restart") == "no":
                assert condition == {"condition": "service_completed_successfully"}, name
            else:
                assert condition == {"condition": "service_healthy"} and "healthcheck" in SERVICES[dependency], name


def test_the_dockerfile_installs_the_package_and_runs_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "pip wheel" in dockerfile
    for package in ("contracts", "aggregates", "processor", "projections"):
        assert f"COPY {package} {package}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the docker CLI has no compose plugin: {probe.stderr.strip()[:200]}")
    done = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
