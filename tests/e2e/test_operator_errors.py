"""What a stranger operating coterm meets (issue 19): every mistake is one line on standard error
and exit 2, never a traceback, never a secret echoed; `coterm staff add` gives a working login."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from processor.dev.broker import free_port
from processor.store.opening import open_store
from projections.staff import hash_token
from tests.e2e.test_cli import COTERM, coterm

SECRET = "s3cret-token-value-do-not-echo"


def _one_line(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_ports_out_of_range_or_busy_are_one_line_on_every_command_that_listens(tmp_path: Path) -> None:
    for args in (["serve", "--port", "99999"], ["serve", "--port", "-1"], ["vendor-sim", "--port", "99999"],
                 ["run", "--metrics-port", "99999"], ["demo", "--serve", "--port", "70000"]):
        _one_line(coterm(*args, timeout=30), "is not a TCP port (0-65535)")
    store = str(tmp_path / "s.sqlite")
    open_store(store).close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args in (["vendor-sim", "--port", port], ["serve", "--port", port], ["demo", "--serve", "--port", port]):
            _one_line(coterm(*args, env={"COTERM_STORE": store}, timeout=30), "cannot listen there")


def test_a_staff_file_is_checked_whole_and_never_echoes_a_token(tmp_path: Path) -> None:
    staff = tmp_path / "staff.json"
    store = str(tmp_path / "s.sqlite")
    open_store(store).close()
    cases = [
        ({"users": [{"name": "a", "token": "short-" + SECRET[:6], "roles": []}]}, "at least 16 characters"),
        ({"users": [{"name": "a", "token": SECRET, "roles": ["Acount Administrator"]}]},
         "unknown role 'Acount Administrator' (known: Account Administrator)"),
        ({"users": [{"name": "a", "token": SECRET, "roles": []},
                    {"name": "b", "token_sha256": hash_token(SECRET), "roles": []}]}, "users 'a' and 'b' have the same token"),
        ({"users": [{"name": "a", "token": SECRET}, {"name": "a", "token": SECRET + "x"}]}, "two users are named 'a'"),
        ({"roles": {"Desk": ["Partial Upgrad"]}, "users": []}, "unknown privilege 'Partial Upgrad'"),
    ]
    for document, says in cases:
        staff.write_text(json.dumps(document))
        done = coterm("serve", env={"COTERM_STAFF_FILE": str(staff), "COTERM_STORE": store}, timeout=30)
        _one_line(done, says)
        assert SECRET[:6] not in done.stderr  # no part of a token, however the file was wrong


def test_incomplete_sasl_settings_name_what_is_missing_not_the_broker(tmp_path: Path) -> None:
    base = {"COTERM_VENDOR_URL": "http://127.0.0.1:9", "COTERM_STORE": str(tmp_path / "s.sqlite"),
            "COTERM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    cases = [
        ({"COTERM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs COTERM_KAFKA_SASL_MECHANISM"),
        ({"COTERM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "COTERM_KAFKA_SASL_MECHANISM": "PLAIN",
          "COTERM_KAFKA_SASL_PASSWORD": SECRET}, "needs COTERM_KAFKA_SASL_USERNAME"),
        ({"COTERM_KAFKA_SASL_MECHANISM": "PLAIN", "COTERM_KAFKA_SASL_USERNAME": "u",
          "COTERM_KAFKA_SASL_PASSWORD": SECRET}, "needs COTERM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL"),
    ]
    for env, says in cases:
        done = coterm("run", env={**base, **env}, timeout=30)
        _one_line(done, says)
        assert "no Kafka broker answered" not in done.stderr and SECRET not in done.stderr


def test_serve_refuses_a_store_that_does_not_exist_unless_told_to_create_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "cotrm.sqlite")  # a typo of the real store's name
    _one_line(coterm("serve", "--port", str(free_port()), env={"COTERM_STORE": missing}, timeout=30),
              "does not exist (a typo? `coterm serve --create-store`")
    assert not Path(missing).exists()  # nothing was created by the refusal


def _get(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_staff_add_gives_a_working_login_and_readiness_notices_a_store_replaced_under_serve(tmp_path: Path) -> None:
    staff, store = tmp_path / "deploy" / "staff.json", tmp_path / "s.sqlite"
    added = coterm("staff", "add", "alice", "--role", "Account Administrator", "--file", str(staff), timeout=30)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 16 and token not in added.stderr and token not in staff.read_text()
    [user] = json.loads(staff.read_text())["users"]
    assert user == {"name": "alice", "token_sha256": hash_token(token), "roles": ["Account Administrator"]}
    again = coterm("staff", "add", "alice", "--role", "Account Administrator", "--file", str(staff), "--if-absent")
    assert again.returncode == 0 and again.stdout == "" and json.loads(staff.read_text())["users"] == [user]
    _one_line(coterm("staff", "add", "alice", "--file", str(staff)), "already has a user 'alice'")
    _one_line(coterm("staff", "add", "bob", "--role", "Boss", "--file", str(staff)), "--role 'Boss' is not a role")

    port = free_port()
    server = subprocess.Popen([*COTERM, "serve", "--port", str(port), "--create-store"], stderr=subprocess.DEVNULL,
                              env={**os.environ, "COTERM_STORE": str(store), "COTERM_STAFF_FILE": str(staff)})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while _ready(base) is None:
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.3)
        request = urllib.request.Request(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["user"] == "alice"
        assert _get(f"{base}/readyz")[0] == 200
        other = tmp_path / "other.sqlite"
        open_store(str(other)).close()
        other.replace(store)  # as `coterm demo` run again under a running serve would
        status, body = _get(f"{base}/readyz")
        assert status == 503 and "was replaced after coterm serve opened it" in body["reason"], body
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ready(base: str) -> int | None:
    try:
        return _get(f"{base}/healthz")[0]
    except OSError:
        return None


def test_publish_dry_run_needs_no_broker(tmp_path: Path) -> None:
    line = {"message_id": "0b9f3c4e-2f55-4d7e-9a36-5d8b2f7e1a10", "type": "clock.tick", "schema_version": 1, "occurred_at": "2026-11-01T00:00:00Z",
            "source": "tests", "payload": {}}
    file = tmp_path / "orders.jsonl"
    file.write_text(json.dumps(line) + "\n")
    done = coterm("publish", "--dry-run", str(file), env={"COTERM_KAFKA_BOOTSTRAP": ""}, timeout=30)
    assert done.returncode == 0 and "1 valid message(s), 0 invalid; nothing published" in done.stdout, done.stderr
    done = coterm("publish", str(file), env={"COTERM_KAFKA_BOOTSTRAP": ""}, timeout=30)
    _one_line(done, "COTERM_KAFKA_BOOTSTRAP is not set")
