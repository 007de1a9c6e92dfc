"""The dashboard's Drift page in a real headless Chromium: drift the vendor's simulator reports,
found by a real pass, listed and counted; staff open one and resolve it with a reason."""

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from processor.dev.vendor_sim import VendorSimulator
from processor.outbox.throttle import Limiter
from processor.outbox.vendor_client import VendorClient
from processor.outbox.vendor_status import VendorStatus
from processor.reconcile.sweep import Sweep
from processor.store.opening import open_store
from projections.projection import read_models
from projections.staff import Staff
from tests import seed
from tests.http_server import call, serving
from tests.waiting import wait_for

TOKEN = "admin-token-0123456789"


def test_staff_resolve_a_drift_from_the_drift_page(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    app = open_store(str(tmp_path / "store.sqlite"))
    seed.customer_with_subscriptions(app, "c1", seats=100)
    vendor = VendorSimulator().start()
    try:
        request = urllib.request.Request(f"{vendor.url}/_sim/seats", method="POST",
                                         data=json.dumps({"c1-s1": 96, "c1-epp": 100}).encode())
        urllib.request.urlopen(request, timeout=10).read()
        Sweep(app, VendorClient(vendor.url), "nightly pass", rate_per_s=0).run()
        staff_file = tmp_path / "staff.json"
        staff_file.write_text(json.dumps({"users": [{"name": "alice", "token": TOKEN, "roles": ["Account Administrator"]}]}))
        with serving(app, Staff.load(str(staff_file))) as url:
            browser.get(url + "/#/drift")
            login = wait_for(lambda: (d := browser.find_element(By.ID, "login")).is_displayed() and d)
            login.find_element(By.ID, "login-token").send_keys(TOKEN)
            login.find_element(By.ID, "login-submit").click()
            wait_for(lambda: browser.find_element(By.ID, "drift-count-open").text == "open 1", what="one open drift")
            assert "2 compared, 1 new drift" in browser.find_element(By.ID, "drift-pass").text
            # The page re-renders as it refreshes: each element is found again where it is used
            # (an element found before a refresh is stale after it).
            row = "#drifts tbody tr[data-sub='c1-s1']"
            text = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, row).text, what="the drift's row")
            assert "96" in text and "100" in text and "nightly pass" in text
            wait_for(lambda: browser.find_element(By.CSS_SELECTOR, row).click() or True, what="the row clicked")
            wait_for(lambda: browser.find_element(By.ID, "drift-seats").text == "100")
            browser.find_element(By.ID, "drift-resolve").click()  # no reason yet: asked for one, nothing recorded
            wait_for(lambda: "say why first" in browser.find_element(By.ID, "drift-notice").text)
            browser.find_element(By.ID, "drift-why").send_keys("4 seats removed in the vendor's portal")
            browser.find_element(By.ID, "drift-resolve").click()
            wait_for(lambda: "resolved by alice" in browser.find_element(By.ID, "drift-notice").text)
            assert browser.find_element(By.ID, "drift-seats").text == "96"
            wait_for(lambda: browser.find_element(By.ID, "drift-count-resolved").text == "resolved 1")
            assert "DriftResolved" in browser.find_element(By.ID, "drift-detail").text
            status, one = call(f"{url}/api/drift/c1-s1", token=TOKEN)
            assert one["seats"] == 96 and one["drift"]["why"] == "4 seats removed in the vendor's portal"
            # The operations page says when the vendor throttles coterm (the leading outbox's limiter).
            browser.get(url + "/#/")
            limiter = Limiter(32)
            for _ in range(2):
                limiter.acquire(threading.Event())
                limiter.release(throttled=True)  # one burst of 429s: 32 -> 16 calls at once
            VendorStatus(read_models(app, create=False), limiter, "test-outbox").round(leading=True)
            chip = wait_for(lambda: (t := browser.find_element(By.ID, "vendor-throttling").text) and "at most" in t and t,
                            timeout=20, what="the throttling chip")
            assert "at most 16 of 32 calls at once" in chip and "(2 429s in all)" in chip, chip
    finally:
        vendor.stop()
        app.close()
