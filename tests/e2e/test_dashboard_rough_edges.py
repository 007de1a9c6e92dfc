"""The dashboard's rough edges a new user met (issue 17), each checked in a real Chromium:
a sign-in that explains itself, charts with one minute of data, an operation's detail in view
from a shared link, Retry agreeing with the API, long labels cut with the whole in a title,
an operation cancelled before any order, operations linked to their customer, a customer list."""

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregates import commands, transfer_commands
from aggregates.inbox import DeadLetter
from processor.store.opening import open_store
from projections.staff import Staff
from tests import seed
from tests.http_server import call, serving
from tests.waiting import wait_for

TOKEN = "admin-token-0123456789"
LONG_ERROR = "payload.target.plan_id: " + "a value this long is what a confused upstream sends " * 6


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    app = open_store(str(tmp_path / "store.sqlite"))
    seed.customer_with_subscriptions(app)
    seed.run(app, commands.register_customer, "c2", partner_id="p", name="Other Corp", channel="direct",
             distributor_id=None, data_complete=True)
    for n in range(55):  # more rows than a screen holds: a detail below them would be out of sight
        seed.operation(app, f"w-{n:02}", "waiting")
    for n, outcome in enumerate(seed.OUTCOMES):
        seed.operation(app, f"op-{n}", outcome)
    seed.run(app, transfer_commands.cancel_transfer, "op-pre", "ops", "placed by mistake")  # before any half
    uow = app.unit_of_work()
    uow.add(DeadLetter(topic="orders.v1", partition=0, offset=9, reason="UNSUPPORTED_SCHEMA_VERSION", error=LONG_ERROR,
                       original=base64.b64encode(b'{"schema_version": 2}').decode(), message_id=None,
                       type="transfer.upgrade_ordered"))
    app.commit(uow)
    staff_file = tmp_path / "staff.json"
    staff_file.write_text(json.dumps({"users": [{"name": "alice", "token": TOKEN, "roles": ["Account Administrator"]}]}))
    with serving(app, Staff.load(str(staff_file))) as url:
        yield url
    app.close()


def _rect(browser: Any, element_id: str) -> dict[str, float]:
    return browser.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return {top: r.top, bottom: r.bottom, width: r.width, height: window.innerHeight};", element_id)


def test_rough_edges(browser, dashboard: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    url = dashboard
    # A sign-in that explains itself, and says plainly when a token is wrong (no raw API error).
    browser.get(url + "/#/?op=op-3")
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="the sign-in dialog")
    why = browser.find_element(By.ID, "login-why").text
    assert "staff users" in why and "Authorization" not in why and "Bearer" not in why
    browser.find_element(By.ID, "login-token").send_keys("not-the-right-token-at-all")
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: "belongs to no staff user" in browser.find_element(By.ID, "login-error").text, what="why the token failed")
    browser.find_element(By.ID, "login-token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-submit").click()

    # A shared link to an operation shows it at once, in view, above the 60-odd rows.
    wait_for(lambda: browser.find_element(By.ID, "d-title").text == "Operation op-3", what="the linked operation")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#ops tbody tr")) == 50)
    detail = _rect(browser, "detail")
    assert detail["top"] < detail["height"] and detail["bottom"] > 0, detail

    # Retry, its explanation and the API agree: VENDOR_REJECTED is retryable: false, and staff may retry it.
    op = call(f"{url}/api/operations/op-3", token=TOKEN)[1]
    assert op["reason_code"] == "VENDOR_REJECTED" and op["retryable"] is False and op["allowed_actions"]["retry"]["allowed"]
    assert browser.find_element(By.ID, "d-retry").is_enabled()
    words = browser.find_element(By.ID, "d-words").text
    assert "not retried on its own (retryable: false)" in words and "for good" not in words
    assert "Retry:" not in browser.find_element(By.ID, "d-why-not").text
    for n in range(len(seed.OUTCOMES)):
        browser.get(f"{url}/#/?op=op-{n}")
        wait_for(lambda n=n: browser.find_element(By.ID, "d-title").text == f"Operation op-{n}")
        allowed = call(f"{url}/api/operations/op-{n}", token=TOKEN)[1]["allowed_actions"]
        for action in ("cancel", "retry"):
            button = browser.find_element(By.ID, f"d-{action}")
            assert button.is_enabled() == allowed[action]["allowed"], (n, action)
            if not allowed[action]["allowed"]:
                assert allowed[action]["why_not"] in button.get_attribute("title")

    # One minute of data draws narrow bars, and its time once (not "09:13 ... 09:13").
    minutes = call(f"{url}/api/stats", token=TOKEN)[1]["ended_per_minute"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-throughput rect.bar-ok")
    assert 1 <= len(bars) <= 3 and all(float(b.get_attribute("width")) <= 40 for b in bars)
    if len(minutes) == 1:
        assert not browser.find_elements(By.ID, "chart-last")

    # Long labels are cut to fit, with the whole in a title.
    # (Read in one go, again if the 3-second refresh drew the chart anew meanwhile.)
    shown, whole = wait_for(lambda: next((g.find_element(By.TAG_NAME, "text").text,
                                          g.find_element(By.TAG_NAME, "title").get_attribute("textContent"))
                                         for g in browser.find_elements(By.CSS_SELECTOR, "#chart-reasons g.reason-row")
                                         if "UNSUPPORTED" in g.find_element(By.TAG_NAME, "text").text))
    assert shown.endswith("…") and "dead letter UNSUPPORTED_SCHEMA_VERSION" in whole

    # An operation cancelled before any order: no blank customer, no lone arrow; rows link to customers.
    browser.get(url + "/#/")
    def pre_row() -> tuple[list[str], str]:
        row = browser.find_element(By.CSS_SELECTOR, "tr[data-op='op-pre']")
        return [c.text for c in row.find_elements(By.TAG_NAME, "td")], row.text
    cells, text = wait_for(pre_row)
    assert cells[1] == "—" and cells[5] == "cancelled before any order arrived" and "→" not in text
    href = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr[data-op='op-0'] a.customer-link").get_attribute("href"))
    assert href.endswith("#/customer/c1")
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "tr[data-op='op-0'] a.customer-link").click() or True)
    wait_for(lambda: "Customer c1" in browser.find_element(By.ID, "cust").text, what="the linked customer")
    # This serve has no broker: its start buttons are greyed, saying why.
    migrate = wait_for(lambda: browser.find_element(By.ID, "c-migrate"))
    assert not migrate.is_enabled() and "COTERM_KAFKA_BOOTSTRAP is unset" in migrate.get_attribute("title")
    assert "COTERM_KAFKA_BOOTSTRAP is unset" in browser.find_element(By.ID, "c-move-why").text

    # Dead letters: a long error stays in its cell, whole in the title.
    browser.get(url + "/#/deadletters")
    cell = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#dls tbody tr td.truncate[title^='payload.target']"))
    assert cell.get_attribute("title") == LONG_ERROR and cell.size["width"] < 400

    # A customer list, searched by id or name.
    browser.get(url + "/#/customer")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#customers tbody tr[data-customer]")) == 2)
    browser.find_element(By.ID, "c-q").send_keys("other")
    browser.find_element(By.CSS_SELECTOR, "#cust-search button").click()
    wait_for(lambda: [r.get_attribute("data-customer") for r in
                      browser.find_elements(By.CSS_SELECTOR, "#customers tbody tr[data-customer]")] == ["c2"])
