"""Dead letters as work items, end to end through Kafka: list them, re-drive them once each (with
who and why, optionally corrected), and the re-driven messages are processed like new ones."""

import json
from pathlib import Path

from processor.dev.broker import BundledBroker
from processor.dev.vendor_sim import VendorSimulator
from tests.e2e.test_cli import coterm
from tests.harness import Scenario, seed_reference_data
from tests.http_server import call, serving

SUB = {"subscription_id": "late-s", "customer_id": "late", "product_id": "p1", "plan_id": "plan-p1",
       "billing_model": "annual", "management": "partner_managed", "seats": 4, "term_months": 12,
       "start_date": "2026-01-05", "end_date": "2027-01-04", "subscription_key": "KEY-late"}
CUSTOMER = {"customer_id": "late", "partner_id": "partner-1", "name": "Late Ltd", "channel": "direct",
            "distributor_id": None, "data_complete": True}


def test_dead_letters_are_listed_redriven_once_and_processed_like_new(broker: BundledBroker, vendor: VendorSimulator,
                                                                     tmp_path: Path) -> None:
    from processor.store.opening import open_store
    from projections.staff import Staff

    s = Scenario(broker.bootstrap, str(tmp_path / "store.sqlite"), vendor.url)
    seed_reference_data(s)
    s.send("subscription.purchased", SUB, key="late")  # its customer is not known yet: UNKNOWN_REFERENCE
    bad_seats = s.send("subscription.purchased", {**SUB, "subscription_id": "late-t", "seats": 0}, key="late")
    s.process()
    s.send("customer.registered", CUSTOMER)  # upstream fixed its side
    s.process()
    assert len(s.dead_letters()) == 2

    app = open_store(s.store)
    with serving(app, Staff.load(None)) as url:
        _, page = call(f"{url}/api/deadletters?reason=UNKNOWN_REFERENCE")
        [unknown] = page["items"]
        _, invalid = call(f"{url}/api/deadletters?reason=INVALID_PAYLOAD")
        [invalid] = invalid["items"]
        _, detail = call(f"{url}/api/deadletters/{invalid['id']}")
        assert detail["original_json"]["payload"]["seats"] == 0 and detail["original_text"].startswith("{")
        assert call(f"{url}/api/deadletters/nothex")[0] == 404
        assert call(f"{url}/api/deadletters?since=not-a-date")[0] == 400
    app.close()

    env = s.env()
    dry = coterm("redrive", "--reason", "UNKNOWN_REFERENCE", "--by", "alice", "--why", "customer now known",
                 "--dry-run", env=env)
    assert dry.returncode == 0 and "would re-drive" in dry.stdout
    done = coterm("redrive", "--reason", "UNKNOWN_REFERENCE", "--by", "alice", "--why", "customer now known",
                  "--json", env=env)
    assert done.returncode == 0, done.stderr
    [outcome] = json.loads(done.stdout)
    assert outcome["redriven"] and outcome["deadletter_id"] == unknown["id"]
    again = coterm("redrive", "--id", unknown["id"], "--by", "bob", "--why", "oops", env=env)
    assert again.returncode == 1 and "already re-driven by alice" in again.stdout  # never twice by accident

    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({**bad_seats, "payload": {**bad_seats["payload"], "seats": 2}}))
    done = coterm("redrive", "--id", invalid["id"], "--message", str(fixed), "--by", "alice", "--why", "seats fixed",
                  env=env)
    assert done.returncode == 0, done.stderr
    refused = coterm("redrive", "--reason", "INVALID_PAYLOAD", "--message", str(fixed), "--by", "a", "--why", "b", env=env)
    assert refused.returncode == 2 and "exactly one --id" in refused.stderr

    s.process()
    app = open_store(s.store)
    try:
        from aggregates.subscription import Subscription

        assert app.repository.get(Subscription.create_id("late-s")).seats == 4  # processed like a new message
        assert app.repository.get(Subscription.create_id("late-t")).seats == 2  # with the corrected payload
    finally:
        app.close()
    assert len(s.dead_letters()) == 2  # no new dead letter
    republished = [json.loads(r.value) for r in _orders(s) if b"redriven_from" in r.value]
    assert {m["redriven_from"]["dead_letter_id"] for m in republished} == {unknown["id"], invalid["id"]}
    assert all(m["message_id"] != m["redriven_from"]["message_id"] for m in republished)


def _orders(s: Scenario) -> list:  # type: ignore[type-arg]
    from processor.kafka_io import read_topic

    return read_topic(s.bootstrap, s.settings.topic_orders)
