"""Headless Chromium through Selenium, with waiting helpers and failure screenshots."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
MISSING = (
    "headless Chromium and chromedriver are needed for the browser tests: "
    "install the Debian packages `chromium chromium-driver` (apt-get install chromium "
    "chromium-driver); missing: {}"
)

LONG = 120.0
"""Default wait: a kernel can take 20 s to start on two slow cores; leave room."""

IGNORED = (NoSuchElementException, StaleElementReferenceException)


def find_chromium() -> tuple[str, str]:
    """Return the paths of Chromium and chromedriver, or raise naming the Debian packages."""
    driver = shutil.which("chromedriver")
    binary = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver)) if not path]
    if missing:
        raise RuntimeError(MISSING.format(", ".join(missing)))
    return binary, driver


class Browser:
    """One headless Chromium with a throw-away profile; quit() removes everything it made."""

    def __init__(self) -> None:
        binary, driver_path = find_chromium()
        self.profile = Path(tempfile.mkdtemp(prefix="kioskhub-chromium-"))
        # Where failure screenshots go; the ``browser`` fixture points it at a pytest tmp dir.
        self.artifacts = self.profile.parent
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={self.profile}")
        try:
            self.driver = webdriver.Chrome(service=Service(driver_path), options=options)
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_window_size(1400, 1000)
        self.driver.set_page_load_timeout(LONG)

    # -- navigation and lookups ---------------------------------------------------------

    def get(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return self.driver.current_url

    def page_text(self) -> str:
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except Exception:
            return ""

    def css(self, selector: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    # -- waiting --------------------------------------------------------------------------

    def wait_until(self, condition: Callable, timeout: float = LONG, message: str = ""):
        """Wait until ``condition(driver)`` is truthy and return its value.

        Raises TimeoutError with ``message`` (and the waiting time) when it never is.
        """
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.25, ignored_exceptions=IGNORED)
        try:
            return wait.until(condition)
        except TimeoutException:
            raise TimeoutError(f"after {timeout:g}s: {message or 'condition never held'}") from None

    def wait_for(self, selector: str, timeout: float = LONG, visible: bool = True) -> WebElement:
        """Wait for an element matching the CSS ``selector`` (displayed, unless told not to)."""

        def found(driver):
            for element in driver.find_elements(By.CSS_SELECTOR, selector):
                if not visible or element.is_displayed():
                    return element
            return False

        return self.wait_until(found, timeout, f"no element matching {selector!r}")

    def wait_for_url(self, predicate: Callable[[str], bool], timeout: float = LONG, what=""):
        return self.wait_until(
            lambda driver: predicate(driver.current_url) and driver.current_url,
            timeout,
            f"the URL never became {what or 'as expected'}",
        )

    def wait_for_text(self, selector: str, text: str, timeout: float = LONG) -> WebElement:
        """Wait for an element matching ``selector`` whose text contains ``text``."""

        def found(driver):
            for element in driver.find_elements(By.CSS_SELECTOR, selector):
                if text in element.text:
                    return element
            return False

        return self.wait_until(found, timeout, f"no {selector!r} containing {text!r}")

    def click_text(self, selector: str, text: str, timeout: float = LONG) -> WebElement:
        """Click the displayed element matching ``selector`` whose text is exactly ``text``."""

        def clickable(driver):
            for element in driver.find_elements(By.CSS_SELECTOR, selector):
                if element.is_displayed() and element.text.strip() == text:
                    element.click()
                    return element
            return False

        return self.wait_until(clickable, timeout, f"no {selector!r} labelled {text!r}")

    # -- evidence -------------------------------------------------------------------------

    def screenshot(self, path: Path) -> Path | None:
        """Save a screenshot and the page's HTML next to it; never raise."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.driver.save_screenshot(str(path))
            path.with_suffix(".html").write_text(self.driver.page_source)
        except Exception:
            return None
        return path

    def describe(self, screenshot: Path | None = None) -> str:
        """Where the browser is and what it shows, for a failure report; never raise."""
        try:
            url = self.driver.current_url
        except Exception as exc:
            url = f"unknown ({exc.__class__.__name__})"
        return (
            f"URL: {url}\nscreenshot: {screenshot} (page source next to it, .html)\n"
            f"page text:\n{self.page_text()[:2000]}"
        )

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
