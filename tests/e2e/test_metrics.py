"""Prometheus metrics, liveness and readiness of `coterm run --metrics-port`, scraped over HTTP."""

import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from processor.dev.broker import BundledBroker, free_port
from processor.dev.vendor_sim import VendorSimulator
from tests.e2e.test_cli import COTERM
from tests.harness import Scenario, downgrade, seed_reference_data, upgrade
from tests.waiting import wait_for


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (None: not exposed)."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_run_exposes_metrics_health_and_readiness(broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path) -> None:
    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    seed_reference_data(s)
    s.send("transfer.downgrade_ordered", downgrade("m-op"))
    s.send("transfer.upgrade_ordered", upgrade("m-op"))
    s.send("transfer.downgrade_ordered", downgrade("m-lonely"))  # its pair never comes: it waits
    s.send_raw(b"{not json", key="c1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*COTERM, "run", "--metrics-port", str(port)], env={**os.environ, **s.env()},
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: get(f"{base}/healthz")[0] == 200, 60)
        text = wait_for(lambda: (t := get(f"{base}/metrics")[1]) and sample(t, "coterm_vendor_calls_total", result="success") == 1 and
                        sample(t, "coterm_halves_waiting") == 1 and t, 60)
        assert sample(text, "coterm_messages_total", outcome="applied", reason="") == 8  # 5 reference + 3 halves
        assert sample(text, "coterm_messages_total", outcome="dead_lettered", reason="INVALID_JSON") == 1
        assert sample(text, "coterm_vendor_call_seconds_count") == 1
        assert sample(text, "coterm_vendor_call_seconds_bucket", le="+Inf") == 1
        assert sample(text, "coterm_vendor_calls_pending") == 0
        assert sample(text, "coterm_vendor_calls_waiting_turn") == 0  # nothing waits behind another call
        assert sample(text, "coterm_outbox_leader") == 1  # alone on a SQLite store, it leads
        # Alone in its group it holds every partition of the orders topic, each read to the end.
        lags = [sample(text, "coterm_consumer_lag_messages", topic=s.settings.topic_orders, partition=str(p))
                for p in range(s.settings.topic_partitions)]
        assert lags == [0] * s.settings.topic_partitions
        assert sample(text, "coterm_consumer_lag_messages", topic=s.settings.topic_orders,
                      partition=str(s.settings.topic_partitions)) is None  # no partition beyond the topic's
        assert wait_for(lambda: sample(get(f"{base}/metrics")[1], "coterm_results_published_total") == 2, 60)  # result + dead letter
        _, body = wait_for(lambda: (r := get(f"{base}/readyz"))[0] == 200 and r, 60)
        assert json.loads(body)["ready"] is True
        assert get(f"{base}/nothing")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_serve_metrics_and_readiness_are_open_even_with_a_staff_file(tmp_path: Path) -> None:
    from processor.store.opening import open_store
    from projections.staff import Staff
    from tests import seed
    from tests.http_server import serving

    app = open_store(str(tmp_path / "store.sqlite"))
    seed.customer_with_subscriptions(app)
    for n, outcome in enumerate(seed.OUTCOMES):
        seed.operation(app, f"op-{n}", outcome)
    from aggregates import bulk_commands

    seed.run(app, bulk_commands.request_bulk, "b1", {"partner_id": "p", "requested_by": "x", "product_ids": ["p1"],
                                                     "customer_ids": ["c1"], "all_customers_of_partner": False})
    staff_file = tmp_path / "staff.json"
    staff_file.write_text(json.dumps({"users": [{"name": "a", "token": "admin-token-0123456789", "roles": []}]}))
    with serving(app, Staff.load(str(staff_file))) as url:
        status, text = get(f"{url}/metrics")
        assert status == 200
        assert sample(text, "coterm_operations", status="failed") == 2
        assert sample(text, "coterm_operations_refused", reason="PAIRING_TIMEOUT") == 1
        assert sample(text, "coterm_read_model_lag_events") == 0
        assert sample(text, "coterm_bulk_migrations", status="deciding") == 1  # c1's p1 waits for its window
        assert sample(text, "coterm_bulk_migrations", status="finished") == 0
        status, body = get(f"{url}/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        assert get(f"{url}/api/stats")[0] == 401  # the data itself still needs a token
    app.close()
