"""Headless Chromium (Debian's package, see `make browser`) driven by Playwright against
pytest-django's live server. Playwright's own browser download is not used.

Screenshots go to the test's tmp_path, or to PROMPTRAMP_SCREENSHOTS when it names a folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = os.environ.get("PROMPTRAMP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"

# The live server listens on the loopback address only.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread, which makes Django refuse database
    # calls from it (SynchronousOnlyOperation) while the browser is open; the tests make them on
    # purpose, between browser steps. Allowed only for as long as Playwright runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium: Browser, live_server: object, transactional_db: None) -> Iterator[Page]:
    context = chromium.new_context(base_url=str(live_server), viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page: Page, tmp_path: Path) -> Callable[[str], Path]:
    folder = Path(os.environ.get("PROMPTRAMP_SCREENSHOTS") or tmp_path)

    def take(name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def log_in(page: Page) -> Callable[[str], None]:
    def submit(username: str) -> None:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text(username)

    return submit
