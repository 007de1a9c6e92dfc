"""The CLI as a user runs it: coterm run / demo / vendor-sim, exit codes and messages."""

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from tests.harness import Scenario, downgrade, log_events, seed_reference_data, upgrade
from tests.waiting import wait_for

COTERM = [sys.executable, "-m", "processor.cli.coterm"]
ROOT = str(Path(__file__).resolve().parents[2])


def coterm(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COTERM, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_run_until_idle_processes_and_exits_zero(broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path) -> None:
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    seed_reference_data(s)
    first = s.send("transfer.downgrade_ordered", downgrade("cli-op"))
    s.send("transfer.upgrade_ordered", upgrade("cli-op"))
    done = coterm("run", "--until-idle", "1", env=s.env())
    assert done.returncode == 0, done.stderr
    [result] = s.results_for("cli-op")
    assert result["type"] == "transfer.completed"
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    batches = [line for line in lines if line["event"] == "batch.applied"]  # one line per batch, with counts
    assert sum(b["messages"] for b in batches) == 7 and sum(b.get("applied", 0) for b in batches) == 7
    assert not [line for line in lines if line["event"] == "message.processed"]  # all applied: no line each
    s.send_raw(json.dumps(first).encode(), key="c1")  # redelivered: a duplicate has a line of its own
    s.send("transfer.downgrade_ordered", downgrade("cli-debug"))
    done = coterm("run", "--until-idle", "1", env={**s.env(), "COTERM_LOG_LEVEL": "debug"})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    processed = [line for line in lines if line["event"] == "message.processed"]
    assert [(p["outcome"], p["level"]) for p in processed] == [("duplicate", "info"), ("applied", "debug")], processed
    assert all(line["message_id"] for line in processed) and processed[1]["operation_id"] == "cli-debug"


def test_run_stops_cleanly_on_sigterm(broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path) -> None:
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    log = tmp_path / "run.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*COTERM, "run"], env={**os.environ, **s.env()}, stderr=err)
    # Running for real: in its group, holding the orders partitions (not still starting up).
    wait_for(lambda: any(held for line in log_events(log, "partitions.assigned") for held in line["partitions"]),
             60, "coterm run holding its partitions")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "processor.stopped" in log.read_text()


def test_run_refuses_to_start_without_a_vendor(tmp_path: Path) -> None:
    done = coterm("run", env={"COTERM_VENDOR_URL": "", "COTERM_STORE": str(tmp_path / "s.sqlite")})
    assert done.returncode == 2
    assert "COTERM_VENDOR_URL" in done.stderr


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    done = coterm("run", env={"COTERM_VENDOR_URL": "http://127.0.0.1:1", "COTERM_PAIRING_TIMEOUT_S": "soon",
                              "COTERM_STORE": str(tmp_path / "s.sqlite")})
    assert done.returncode == 2 and "COTERM_PAIRING_TIMEOUT_S='soon'" in done.stderr
    done = coterm("run", env={"COTERM_VENDOR_URL": "http://127.0.0.1:1", "COTERM_STORE": "mysql://db/x"})
    assert done.returncode == 2 and "COTERM_STORE" in done.stderr
    assert coterm("run", "--until-idle", "-3").returncode == 2
    assert coterm("frobnicate").returncode == 2


def test_operator_errors_are_one_line_and_exit_2_never_a_traceback(tmp_path: Path) -> None:
    import socket

    store = str(tmp_path / "s.sqlite")
    cases = [
        (["run"], {"COTERM_KAFKA_BOOTSTRAP": "127.0.0.1:1", "COTERM_KAFKA_CONNECT_TIMEOUT_S": "2",
                   "COTERM_VENDOR_URL": "http://127.0.0.1:9", "COTERM_STORE": store}, "no Kafka broker answered within 2s"),
        (["run"], {"COTERM_VENDOR_URL": "notaurl", "COTERM_STORE": store}, "COTERM_VENDOR_URL='notaurl'"),
        (["run"], {"COTERM_VENDOR_URL": "http://v:1", "COTERM_PAIRING_TIMEOUT_S": "nan"}, "COTERM_PAIRING_TIMEOUT_S='nan'"),
        (["run"], {"COTERM_VENDOR_URL": "http://v:1", "COTERM_TOPIC_ORDERS": "a/b"}, "COTERM_TOPIC_ORDERS='a/b'"),
        (["export", "--since", "2020-01-01", "-o", str(tmp_path / "missing" / "x.jsonl")], {"COTERM_STORE": store},
         "--output"),
        (["export", "--since", "2020-01-02", "--until", "2020-01-01"], {"COTERM_STORE": store}, "is not after"),
    ]
    from processor.store.opening import open_store

    open_store(store).close()  # exists: the export cases fail on their own argument, not on the store
    for args, env, says in cases:
        done = coterm(*args, env=env, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = coterm("serve", "--port", str(busy.getsockname()[1]), env={"COTERM_STORE": store})
        assert done.returncode == 2 and "cannot listen there" in done.stderr and "dashboard on" not in done.stderr


def test_serve_refuses_a_broken_staff_file(tmp_path: Path) -> None:
    staff = tmp_path / "staff.json"
    staff.write_text('{"users": [{"name": "x", "token": "short"}]}')
    done = coterm("serve", "--port", "1", env={"COTERM_STAFF_FILE": str(staff), "COTERM_STORE": str(tmp_path / "s.sqlite")})
    assert done.returncode == 2 and "COTERM_STAFF_FILE" in done.stderr
    done = coterm("serve", env={"COTERM_STAFF_FILE": str(tmp_path / "missing.json")})
    assert done.returncode == 2 and "cannot be read" in done.stderr


def test_hash_token_prints_what_a_staff_file_may_hold_instead() -> None:
    from projections.staff import hash_token

    done = subprocess.run([*COTERM, "hash-token"], input="admin-token-0123456789\n", capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == hash_token("admin-token-0123456789")
    done = subprocess.run([*COTERM, "hash-token"], input="", capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "at least 16 characters" in done.stderr


def test_version_names_the_installed_package() -> None:
    from importlib.metadata import version

    done = coterm("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"coterm {version('coterm')}"


def test_help_lists_the_commands() -> None:
    done = coterm("--help")
    assert done.returncode == 0
    for command in ("run", "demo", "vendor-sim", "serve", "history", "replay", "export", "preview"):
        assert command in done.stdout


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("demo")
    done = coterm("demo", "--customers", "100", "--seed", "3", cwd=where, timeout=300, env={"PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    (where / "stdout.txt").write_text(done.stdout)
    return where


def test_demo_runs_end_to_end(demo_dir: Path) -> None:
    out = (demo_dir / "stdout.txt").read_text()
    assert "Exactly one vendor call per completed transfer: OK" in out
    # Bulk migrations: migrated at once, scheduled for later, and how the scheduled ones ended.
    assert "Bulk migration bulk-partner-3 (finished)" in out and "Bulk migration bulk-partner-5-pilot (cancelled)" in out
    assert "products migrated at once" in out and "products scheduled for their window" in out
    assert "Dead letters" in out and "INVALID_JSON" in out
    assert "coterm serve" in out
    assert (demo_dir / "var/demo/coterm.sqlite").exists()


def test_demo_json_prints_only_the_summary_on_stdout(tmp_path: Path) -> None:
    done = coterm("demo", "--customers", "20", "--seed", "5", "--json", cwd=tmp_path, timeout=300,
                  env={"PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # nothing else on stdout: the narration went to stderr
    assert summary["one_call_per_completed_transfer"] is True
    assert summary["completed_transfers"] == summary["vendor_calls_accepted"] > 0
    assert "Exactly one vendor call" in done.stderr
    bulk = summary["bulk_migrations"]["bulk-partner-3"]
    assert bulk["status"] == "finished" and bulk["scheduled"] == bulk["migrated_later"] + bulk["refused_later"]


def test_replay_verify_passes_after_the_demo_and_fails_on_tampering(demo_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "copy.sqlite"
    shutil.copy(demo_dir / "var/demo/coterm.sqlite", store)
    env = {"COTERM_STORE": str(store)}
    done = coterm("replay", "--verify", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "match the replay, byte for byte" in done.stdout
    replayed = int(done.stdout.split("replayed ")[1].split(" ")[0])
    assert replayed > 1000  # the demo's read models were current: a real comparison, not an empty one
    with sqlite3.connect(store) as db:
        db.execute("UPDATE rm_operations SET doc = replace(doc, '\"seats\":', '\"seats\":1') "
                   "WHERE operation_id = (SELECT MIN(operation_id) FROM rm_operations WHERE status = 'completed')")
        tampered = db.execute("SELECT MIN(operation_id) FROM rm_operations WHERE status = 'completed'").fetchone()[0]
    done = coterm("replay", "--verify", env=env)
    assert done.returncode == 1
    assert "DIFFER" in done.stdout and f"operation_id={tampered}" in done.stdout and "seats" in done.stdout
    done = coterm("replay", "--verify", "--json", env=env)
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["matches"] is False and len(report["differences"]) == 1


def test_history_as_of_and_export(demo_dir: Path, tmp_path: Path) -> None:
    env = {"COTERM_STORE": str(demo_dir / "var/demo/coterm.sqlite")}
    full = coterm("history", "subscription", "cust-0000-m365-e3", "--json", env=env)
    assert full.returncode == 0, full.stderr
    report = json.loads(full.stdout)
    assert report["events"][0]["type"] == "Purchased" and report["events"][0]["message_id"]
    first_at = report["events"][0]["at"]
    early = json.loads(coterm("history", "subscription", "cust-0000-m365-e3", "--json", "--as-of", first_at,
                              env=env).stdout)
    assert len(early["events"]) == 1 and early["state"]["version"] == 1
    before = coterm("history", "customer", "cust-0000", "--as-of", "2000-01-01", env=env)
    assert before.returncode == 1 and "did not exist yet" in before.stderr
    assert coterm("history", "transfer", "no-such-op", env=env).returncode == 1
    assert coterm("history", "customer", "cust-0000", "--as-of", "soon", env=env).returncode == 2
    out = tmp_path / "audit.jsonl"
    done = coterm("export", "--since", "2000-01-01", "--output", str(out), env=env)
    assert done.returncode == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and [line["position"] for line in lines] == sorted(line["position"] for line in lines)
    assert {"aggregate", "type", "at", "message_id", "data"} <= set(lines[0])
    assert coterm("export", "--since", "2999-01-01", env=env).stdout == ""


def test_export_bulk_as_csv_and_json(demo_dir: Path, tmp_path: Path) -> None:
    env = {"COTERM_STORE": str(demo_dir / "var/demo/coterm.sqlite")}
    done = coterm("export", "--bulk", "bulk-partner-5-pilot", "--format", "csv", env=env)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["customer_id"] for r in rows} >= {"cust-0000", "cust-0003", "cust-unknown"}
    assert len(rows) == 3 * len({r["customer_id"] for r in rows})  # one row per customer and product
    assert {r["reason_code"] for r in rows if r["customer_id"] == "cust-unknown"} == {"CUSTOMER_UNKNOWN"}
    assert all(r["subscription_keys"] for r in rows if r["outcome"] == "migrated")
    assert {r["outcome"] for r in rows} <= {"migrated", "rejected", "cancelled"}  # a cancelled bulk waits for nothing
    out = tmp_path / "bulk.json"
    assert coterm("export", "--bulk", "bulk-partner-3", "--format", "json", "-o", str(out), env=env).returncode == 0
    view = json.loads(out.read_text())
    assert view["status"] == "finished" and view["counts"]["scheduled"] == 0
    history = json.loads(coterm("history", "bulk", "bulk-partner-5-pilot", "--json", env=env).stdout)
    types = [e["type"] for e in history["events"]]
    assert types[:2] == ["Requested", "Accepted"] and types[-2:] == ["Cancelled", "Finished"]
    assert history["state"]["status"] == "cancelled"
    missing = coterm("export", "--bulk", "no-such-bulk", env=env)
    assert missing.returncode == 1 and "unknown" in missing.stderr
    assert coterm("export", env=env).returncode == 2  # neither --since nor --bulk
    assert coterm("export", "--bulk", "bulk-partner-3", "--since", "2026-01-01", env=env).returncode == 2


def test_preview_transfer_and_migration(demo_dir: Path) -> None:
    env = {"COTERM_STORE": str(demo_dir / "var/demo/coterm.sqlite")}
    source = "cust-0000-m365-e3"
    done = coterm("preview", "transfer", "--source", source, "--seats", "1000000", "--target-plan", "m365-e5-annual",
                  "--term-months", "1", "--on", "2026-11-02", "--json", env=env)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    codes = [r["reason_code"] for r in verdict["refusals"]]
    assert {"INSUFFICIENT_SEATS", "TERM_LENGTH_MISMATCH"} <= set(codes) and codes[0] == verdict["reason_code"]
    assert verdict["eligible_from"] is None and verdict["vendor_request"] is None
    text = coterm("preview", "transfer", "--source", source, "--seats", "1", "--target-plan", "m365-e5-annual",
                  "--on", "2026-11-05", env=env)
    assert text.returncode == 0 and "ACCEPTED" in text.stdout
    # The vendor call it would make, as the README says: the body, with the source's seats after the move.
    assert "the vendor call it would make" in text.stdout and f'"subscription_id": "{source}"' in text.stdout
    migration = coterm("preview", "migration", "cust-0000", "m365-e3", "elements-epp", "--on", "2026-11-02", env=env)
    assert migration.returncode == 0 and "m365-e3:" in migration.stdout and "PRODUCT_NOT_SUPPORTED" in migration.stdout
    assert coterm("preview", "transfer", "--source", source, "--seats", "0", "--target-plan", "x", env=env).returncode == 2
    assert coterm("preview", "transfer", "--source", source, "--seats", "1", env=env).returncode == 2  # no target
    assert coterm("preview", "migration", "cust-0000", "p", "--on", "someday", env=env).returncode == 2
    assert coterm("preview", "migration", "cust-0000", "p", env={"COTERM_STORE": "/nonexistent/x.sqlite"}).returncode == 2


def test_audit_commands_refuse_a_missing_store(tmp_path: Path) -> None:
    done = coterm("replay", env={"COTERM_STORE": str(tmp_path / "nothing.sqlite")})
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_the_outbox_process_dies_with_a_killed_processor(broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path) -> None:
    # A killed `coterm run` must not leave its outbox behind, sending calls or holding the lead.
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    proc = subprocess.Popen([*COTERM, "run"], env={**os.environ, **s.env()}, stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 30
    while not children and time.monotonic() < deadline:
        time.sleep(0.2)
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert children, "coterm run started no outbox process"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() and "Z" not in _state(c) for c in children):
        assert time.monotonic() < deadline, f"outbox process(es) {children} outlived their parent"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_the_readme_audit_example_works_on_a_demo_store(demo_dir: Path, tmp_path: Path) -> None:
    readme = (Path(ROOT) / "README.md").read_text()
    block = readme.split("## Audit", 1)[1].split("\n\n", 3)[2]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert lines[0] == "export COTERM_STORE=var/demo/coterm.sqlite"
    env = {"COTERM_STORE": str(demo_dir / "var/demo/coterm.sqlite")}
    for line in lines[1:]:
        args = line.split()
        assert args[0] == ".venv/bin/coterm", line
        done = coterm(*args[1:], env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, (line, done.stderr[-500:])
    assert (tmp_path / "audit.jsonl").stat().st_size > 0


def test_serve_signs_in_through_an_issuer_and_staff_add_learns_tenants(tmp_path: Path) -> None:
    from processor.dev.broker import free_port
    from tests import tenants
    from tests.http_server import call
    from tests.oidc_provider import AUDIENCE, CLIENT_ID, running

    staff = tmp_path / "staff.json"
    added = coterm("staff", "add", "pam", "--role", "Partner Administrator", "--partner", "P-ALPHA", "--file", str(staff))
    assert added.returncode == 0, added.stderr
    pam_token = added.stdout.strip()
    refused = coterm("staff", "add", "pete", "--role", "Partner Viewer", "--file", str(staff))
    assert refused.returncode == 2 and "needs a partner_id" in refused.stderr
    assert coterm("serve", env={"COTERM_OIDC_ISSUER": "https://sso.example.com/realms/x",
                                "COTERM_STORE": str(tmp_path / "s.sqlite")}).returncode == 2  # no audience
    with running(tenants.USERS) as provider:
        port = free_port()
        env = {**os.environ, "COTERM_STORE": str(tmp_path / "s.sqlite"), "COTERM_STAFF_FILE": str(staff),
               "COTERM_OIDC_ISSUER": provider.issuer, "COTERM_OIDC_AUDIENCE": AUDIENCE, "COTERM_OIDC_CLIENT_ID": CLIENT_ID}
        server = subprocess.Popen([*COTERM, "serve", "--create-store", "--port", str(port)], env=env,
                                  stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _answers(url + "/healthz"), 30, "coterm serve")
            status, auth = call(url + "/api/auth")
            assert status == 200 and auth["oidc"]["client_id"] == CLIENT_ID and auth["staff_tokens"] is True
            assert auth["oidc"]["token_endpoint"] == provider.issuer + "/token"
            assert call(url + "/api/me", token=provider.mint("quinn"))[1]["tenant"] == {"kind": "partner", "id": "P-BRAVO"}
            assert call(url + "/api/me", token=pam_token)[1]["tenant"] == {"kind": "partner", "id": "P-ALPHA"}
            assert call(url + "/api/customers", token=provider.mint("quinn", aud="other"))[0] == 401
            assert call(url + "/api/customers")[0] == 401
        finally:
            server.terminate()
            _, err = server.communicate(timeout=30)
        assert f"accepting tokens of {provider.issuer} for audience {AUDIENCE} (RS256)" in err


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False
