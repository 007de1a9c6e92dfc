"""Starting work from the dashboard in a real Chromium, through the real broker, processor and
vendor simulator: a migration from the migration window, partial upgrades into a new and into an
existing subscription, a bulk migration previewed, started and cancelled, and a re-drive."""

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from processor.kafka_io import read_topic
from projections.staff import Staff
from tests.harness import Scenario, seed_reference_data, serving_live
from tests.http_server import call
from tests.waiting import wait_for

TOKEN = "admin-token-0123456789"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)  # c1-s1 (p1) ends 2027-01-04: in its renewal window


def _register(s: Scenario, customer: str, partner: str) -> None:
    s.send("customer.registered", {"customer_id": customer, "partner_id": partner, "name": f"Customer {customer}",
                                   "channel": "direct", "distributor_id": None, "data_complete": True})


def _purchase(s: Scenario, customer: str, sub: str, end: str) -> None:
    s.send("subscription.purchased", {"subscription_id": sub, "customer_id": customer, "product_id": "p1",
                                      "plan_id": "plan-p1", "billing_model": "annual", "management": "partner_managed",
                                      "seats": 4, "term_months": 12, "start_date": "2026-07-01", "end_date": end,
                                      "subscription_key": f"KEY-{sub}"}, occurred_at="2026-07-01T09:00:00Z")


@pytest.fixture
def live(sqlite_scenario: Scenario, tmp_path: Path) -> Iterator[tuple[Scenario, str]]:
    """A processor running in the background and `coterm serve` placing orders on its topic."""
    s = sqlite_scenario
    seed_reference_data(s)  # c1 (partner-1): c1-s1 p1 10 seats, c1-t1 p2 5 seats
    _register(s, "c3", "partner-1")
    _purchase(s, "c3", "c3-s1", "2027-06-30")  # out of its window: a bulk schedules it for 2027-04-01
    _purchase(s, "c4", "c4-s1", "2027-01-31")  # before its customer: dead-lettered UNKNOWN_REFERENCE
    _register(s, "c4", "partner-2")
    staff_file = tmp_path / "staff.json"
    staff_file.write_text(json.dumps({"users": [{"name": "alice", "token": TOKEN, "roles": ["Account Administrator"]}]}))
    with serving_live(s, Staff.load(str(staff_file)), clock=lambda: NOW) as url:
        wait_for(lambda: call(f"{url}/api/customers/c4", token=TOKEN)[0] == 200, 60, "the seeded world")
        yield s, url


def _sign_in(browser: Any, url: str, page: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + page)
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="the sign-in dialog")
    browser.find_element(By.ID, "login-token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: browser.find_element(By.ID, "who").text == "signed in as alice", what="who is signed in")


def _showing(browser: Any, element_id: str, words: str) -> bool:
    """Whether the element shows the words; if not, an error naming what it shows instead (so a
    timeout says where the flow stopped)."""
    from selenium.webdriver.common.by import By

    shown = browser.find_element(By.ID, element_id).text
    if words not in shown:
        raise AssertionError(f"#{element_id} shows {shown[:300]!r}")
    return True


def _click(browser: Any, selector: str) -> None:
    """Click once the button is there and enabled; a page that renders again meanwhile is tried again."""
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        button = browser.find_element(By.CSS_SELECTOR, selector)
        if not button.is_enabled():
            return False
        button.click()
        return True
    wait_for(clicked, what=selector)


def _move_seats(browser: Any, url: str, seats: int, plan: str | None = None, existing: str | None = None) -> str:
    """From c1's page, a partial upgrade of c1-s1; returns the operation's final status."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(url + "/#/customer/c1")
    _click(browser, "button.move[data-sub='c1-s1']")
    wait_for(lambda: browser.find_element(By.ID, "pu-dialog").is_displayed())
    field = browser.find_element(By.ID, "pu-seats")
    field.clear()
    field.send_keys(str(seats))
    if plan:
        browser.find_element(By.ID, "pu-plan").send_keys(plan)
    else:
        Select(browser.find_element(By.ID, "pu-kind")).select_by_value("existing_subscription")
        Select(browser.find_element(By.ID, "pu-target")).select_by_value(existing)
    wait_for(lambda: "would pass" in browser.find_element(By.ID, "pu-verdict").text, what="the inline decision")
    browser.find_element(By.ID, "pu-confirm").click()
    op = wait_for(lambda: (m := re.search(r"op=([0-9a-f-]{36})", browser.current_url)) and m.group(1), what="the operation's page")
    # The operation's page follows it live: paired, sent, completed.
    wait_for(lambda: browser.find_element(By.ID, "d-title").text == f"Operation {op}", what="the placed operation")
    return wait_for(lambda: (t := browser.find_element(By.ID, "d-status").text) in ("completed", "rejected", "failed") and t,
                    30, "the operation's outcome")


def test_start_a_migration_partial_upgrades_a_bulk_and_a_redrive_from_the_dashboard(  # type: ignore[no-untyped-def]
        browser, live: tuple[Scenario, str]) -> None:
    from selenium.webdriver.common.by import By

    s, url = live
    _sign_in(browser, url, "/#/customer")
    # The customer list, searched by name.
    browser.find_element(By.ID, "c-q").send_keys("acme")
    browser.find_element(By.CSS_SELECTOR, "#cust-search button").click()
    wait_for(lambda: [r.get_attribute("data-customer") for r in browser.find_elements(By.CSS_SELECTOR, "#customers tbody tr")] == ["c1"])

    # Partial upgrades: into a new co-termed subscription, then into an existing one.
    assert _move_seats(browser, url, 3, plan="plan-e5") == "completed"
    op_new = browser.find_element(By.ID, "d-title").text.removeprefix("Operation ")
    assert _move_seats(browser, url, 2, existing="c1-t1") == "completed"
    op_existing = browser.find_element(By.ID, "d-title").text.removeprefix("Operation ")
    subs = {x["subscription_id"]: x for x in call(f"{url}/api/customers/c1", token=TOKEN)[1]["subscriptions"]}
    assert subs["c1-s1"]["seats"] == 5 and subs["c1-t1"]["seats"] == 7, subs  # seats conserved: 10 -> 5 + 3 new + 2
    assert [x["seats"] for x in subs.values() if x["plan_id"] == "plan-e5"] == [3]
    for op in (op_new, op_existing):
        assert [r["type"] for r in s.results_for(op)] == ["transfer.completed"]
        assert call(f"{url}/api/operations/{op}", token=TOKEN)[1]["halves"]["downgrade"]["requested_by"] == "alice"

    # The migration window: p1 selectable, p2 greyed with its reason; confirm, then what migrated.
    browser.get(url + "/#/customer/c1")
    _click(browser, "#c-migrate")
    wait_for(lambda: browser.find_element(By.ID, "mig-confirm").is_enabled())
    p2 = wait_for(lambda: browser.find_element(By.ID, "mig-p-p2"))
    assert not p2.is_enabled() and "PRODUCT_NOT_SUPPORTED" in p2.get_attribute("title")
    assert browser.find_element(By.ID, "mig-p-p1").is_selected()
    browser.find_element(By.ID, "mig-confirm").click()
    wait_for(lambda: _showing(browser, "mig-result", "Migrated"), 60, "the migration's result")
    outcome = browser.find_element(By.ID, "mig-outcome").text
    assert "c1-s1" in outcome and "KEY-c1-s1" in outcome and "key kept" in outcome
    assert "p1 KEY-c1-s1" in browser.find_element(By.ID, "mig-bundle").text
    browser.find_element(By.ID, "mig-close").click()

    # A bulk migration: preview, start, then cancel it while a product waits for its window.
    browser.get(url + "/#/bulk")
    browser.find_element(By.ID, "nb-partner").send_keys("partner-1")
    browser.find_element(By.ID, "nb-products").send_keys("p1")
    assert not browser.find_element(By.ID, "nb-confirm").is_enabled()  # preview first
    browser.find_element(By.ID, "nb-preview-button").click()
    wait_for(lambda: browser.find_element(By.ID, "nb-scheduled").text == "1", what="the bulk preview")
    preview = browser.find_element(By.ID, "nb-preview").text
    assert "1 on 2027-04-01" in preview and "1 ALREADY_MIGRATED" in preview
    wait_for(lambda: browser.find_element(By.ID, "nb-confirm").is_enabled())
    browser.find_element(By.ID, "nb-confirm").click()
    wait_for(lambda: browser.find_element(By.ID, "bulk-status").text == "deciding", 30, "the bulk deciding")
    browser.find_element(By.ID, "bulk-cancel-reason").send_keys("the partner changed plans")
    browser.find_element(By.ID, "bulk-cancel").click()
    wait_for(lambda: browser.find_element(By.ID, "bulk-status").text == "cancelled", 30, "the bulk cancelled")
    assert "cancelled by alice: the partner changed plans" in browser.find_element(By.ID, "bulk-detail").text

    # A re-drive from the dead letter's page: c4's purchase came before c4; now it applies.
    browser.get(url + "/#/deadletters")
    wait_for(lambda: "UNKNOWN_REFERENCE" in browser.find_element(By.ID, "dls").text)
    browser.find_element(By.CSS_SELECTOR, "#dls tbody tr").click()
    wait_for(lambda: browser.find_element(By.ID, "dl-redrive").is_enabled(), what="the re-drive button")
    browser.find_element(By.ID, "dl-why").send_keys("the customer is registered now")
    browser.find_element(By.ID, "dl-redrive").click()
    wait_for(lambda: "re-driven by alice" in browser.find_element(By.ID, "dl-notice").text)
    browser.get(url + "/#/customer/c4")

    def reloaded_shows_it() -> bool:
        browser.refresh()  # the token stays with the tab
        return wait_for(lambda: browser.find_element(By.ID, "c-subs"), what="c4's page") and \
            "c4-s1" in browser.find_element(By.ID, "c-subs").text
    wait_for(reloaded_shows_it, 30, "the re-driven purchase applied")
    placed = [json.loads(r.value)["type"] for r in read_topic(s.bootstrap, s.settings.topic_orders)
              if r.value and json.loads(r.value).get("source") == "coterm-api"]
    assert sorted(placed) == sorted(["transfer.downgrade_ordered", "transfer.upgrade_ordered"] * 2 + [
        "migration.requested", "migration.bulk_requested", "migration.bulk_cancelled"])  # each order placed once
