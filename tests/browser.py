"""A real headless Chromium for the dashboard's tests: Debian's ``chromium``
and ``chromium-driver``, driven by Selenium through /usr/bin/chromedriver
(no browser download). Missing, the tests skip and say how to get them."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CHROMIUM = os.environ.get("UJUMBE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("UJUMBE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTEFACTS = Path(os.environ.get("UJUMBE_TEST_ARTEFACTS", "test-artefacts")) / "dashboard"


def missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            return (f"{path} is missing: the browser tests need Debian's {package} "
                    "(scripts/test installs chromium and chromium-driver when run as root with apt-get)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


class Browser:
    """One Chromium, a fresh profile; blocking calls, so tests run them in a
    thread (``in_thread``) while the event loop serves the app."""

    def __init__(self, base: str, loop: asyncio.AbstractEventLoop) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a browser or driver
        self.base = base
        self.loop = loop
        self.profile = tempfile.mkdtemp(prefix="ujumbe-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    f"--user-data-dir={self.profile}", "--window-size=1280,1000"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(30)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- from the test's thread ---

    def run(self, coro: Awaitable[T], timeout: float = 30) -> T:
        """Run a coroutine on the event loop (the platform's) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def get(self, path: str) -> None:
        self.driver.get(self.base + path)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def wait(self, check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
        """Poll ``check`` until truthy (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except Exception as exc:  # noqa: BLE001  (an element not there yet)
                last = exc
            time.sleep(0.1)
        self.screenshot("timeout")
        raise AssertionError(f"timed out waiting for {what or check}: last {last!r}; page: {self.driver.current_url}")

    def fresh(self, act: Callable[[], T], timeout: float = 10) -> T:
        """``act`` (find, read, click), again while a poll swaps the elements it
        touches out under it (a stale reference: the click did not happen)."""
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + timeout
        while True:
            try:
                return act()
            except StaleElementReferenceException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def text_of(self, selector: str) -> str:
        """The element's text; read again when htmx swapped it out meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(20):
            try:
                return str(self.css(selector).text)
            except StaleElementReferenceException:
                time.sleep(0.05)
        return str(self.css(selector).text)

    def wait_text(self, selector: str, expected: str, timeout: float = 20) -> None:
        self.wait(lambda: self.text_of(selector) == expected, timeout, f"{selector} to read {expected!r}")

    def fill(self, selector: str, value: str) -> None:
        el = self.css(selector)
        el.clear()
        el.send_keys(value)

    def login(self, login: str, password: str = "correct horse battery") -> None:
        self.get("/dashboard/login")
        self.fill("#login", login)
        self.fill("#password", password)
        self.css("#login-submit").click()
        self.wait(lambda: "/dashboard/today" in self.driver.current_url, what="the page after logging in")

    def mark_page(self) -> None:
        """Tag this page load: ``same_page`` tells later whether it was reloaded."""
        self.driver.execute_script("window.__ujumbe_page = 'kept';")

    def same_page(self) -> bool:
        return self.driver.execute_script("return window.__ujumbe_page === 'kept';") is True

    def screenshot(self, name: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def download_to(self, folder: Path) -> None:
        """Save what the page downloads in ``folder`` (headless Chromium asks nobody)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})

    def csp_violations(self) -> list[str]:
        """Console errors the Content-Security-Policy raised (an inline script would)."""
        return [e["message"] for e in self.driver.get_log("browser")
                if "Content Security Policy" in e.get("message", "") or "Refused to" in e.get("message", "")]


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def require_browser() -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)
