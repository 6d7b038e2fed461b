"""The live breaker page in headless Chromium (Debian's chromium and chromium-driver),
served by a real uvicorn: a trip shows as OPEN within a second."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from api.http import create_app
from api.services import free_port
from tests.support.fleet import Fleet, wait_for

webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (./dev installs them)")


@pytest.fixture
def server(fleet: Fleet) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(fleet.settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    assert wait_for(lambda: srv.started, 10)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def card(browser: object, name: str) -> dict[str, str] | None:
    """The breaker's card, read in one script call: the page re-renders its cards on every
    poll, so an element found in one call may be gone by the next."""
    return browser.execute_script(  # type: ignore[attr-defined]
        "const c = document.querySelector(`[data-breaker='${arguments[0]}']`);"
        "return c ? {state: c.dataset.state, text: c.textContent} : null;", name)


def card_state(browser: object, name: str) -> str | None:
    found = card(browser, name)
    return found["state"] if found else None


def test_the_page_shows_a_trip_within_a_second(fleet: Fleet, server: str, browser: object, tmp_path: Path) -> None:
    browser.get(server + "/")  # type: ignore[attr-defined]
    assert wait_for(lambda: card_state(browser, "ocr") == "closed", 10)
    fleet.breaker("ocr").trip(reason="page test")
    tripped = time.monotonic()
    assert wait_for(lambda: card_state(browser, "ocr") == "open", 5, interval=0.02)
    shown_after = time.monotonic() - tripped
    # The page polls twice a second; a second is the promise, with room for one slow poll.
    assert shown_after < 1.0, f"the page showed OPEN {shown_after:.2f}s after the trip"
    shown = card(browser, "ocr")
    assert shown is not None and "OPEN" in shown["text"] and "probes in" in shown["text"]
    shot = os.environ.get("FUSEBOX_PAGE_SCREENSHOT")
    if shot:  # docs/breaker-page.png is made this way
        browser.save_screenshot(shot)  # type: ignore[attr-defined]
