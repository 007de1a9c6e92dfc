"""docker-compose.yml and the Dockerfile agree with what coterm reads: its variables, its
commands, the services its URLs name, the staff file it loads, the ports its health checks ask."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from processor.cli.coterm import build_parser
from projections.staff import Staff

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
    store = re.match(r"postgresql://(\w+):(\w+)@([\w-]+):(\d+)/(\w+)", processor["COTERM_STORE"])
    assert store is not None
    user, password, pg_host, _, database = store.groups()
    assert pg_host in SERVICES and SERVICES[pg_host]["environment"] == {"POSTGRES_PASSWORD": password,
                                                                       "POSTGRES_DB": database} and user == "postgres"
    assert SERVICES["dashboard"]["environment"]["COTERM_STORE"] == processor["COTERM_STORE"]
    vendor = re.match(r"http://([\w-]+):(\d+)$", processor["COTERM_VENDOR_URL"])
    assert vendor is not None and vendor.group(1) in SERVICES
    assert SERVICES[vendor.group(1)]["command"][-1] == vendor.group(2)  # --port


def test_the_staff_file_coterm_loads_is_mounted_and_valid() -> None:
    dashboard = SERVICES["dashboard"]
    path = dashboard["environment"]["COTERM_STAFF_FILE"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in dashboard["volumes"])}
    assert path in mounts, f"COTERM_STAFF_FILE={path} is not mounted"
    staff = Staff.load(str(ROOT / mounts[path]))
    assert staff.enabled and staff.config is not None
    assert all(u.token is None and u.token_sha256 for u in staff.config.users)  # the example holds no credential


def test_health_checks_ask_the_ports_the_commands_listen_on() -> None:
    for name, service in COTERM_SERVICES.items():
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
        assert service.get("restart") == "unless-stopped", name
        for dependency, condition in (service.get("depends_on") or {}).items():
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
