"""A real headless Chromium for the dashboard's tests, and waiting for what a page shows."""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
T = TypeVar("T")


def chromium() -> Iterator[Any]:
    """A fixture body: skips (fails under COTERM_REQUIRE_BROWSER) when Debian's Chromium is missing."""
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("COTERM_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "what was expected") -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - the page is still rendering
            last = error
        time.sleep(0.1)
    raise AssertionError(f"the dashboard never showed {what} (last error: {last!r})")
