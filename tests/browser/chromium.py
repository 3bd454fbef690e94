"""Headless Chromium driven by selenium: Debian's ``chromium`` and ``chromium-driver``
(installed by scripts/install-servers.sh). One browser per test module."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
WIDTH = 1280


def start_chromium(profile: Path) -> WebDriver:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} missing: run scripts/install-servers.sh (Debian chromium, chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    return driver


def quit_chromium(driver: WebDriver) -> None:
    """Quit the browser and its driver. Selenium's ``Service.send_remote_shutdown_command``
    leaves the response of its ``/shutdown`` request (and its socket) to the garbage collector;
    collect it here, quietly, rather than in a later test (where ``filterwarnings = error``
    would fail whichever test ran a collection next)."""
    driver.quit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


class Browser:
    """The test's hands and eyes: open pages, fill forms, submit and wait for the next page,
    and keep a screenshot of each page."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "body") -> str:
        return str(self.find(css).text)

    @property
    def source(self) -> str:
        return str(self.driver.page_source)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def choose(self, css: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_value(value)

    def submit(self, css: str) -> None:
        """Click ``css`` and wait until the next page has replaced this one."""
        self.navigate(lambda: self.find(css).click())

    def navigate(self, action: Callable[[], object]) -> None:
        """Run ``action`` and wait until a new document has loaded. The old document is marked
        with a property of its ``window``, which the next document does not have. (Waiting for an
        element of the old page to go stale is racy: while the page is being replaced, Chromium
        may answer "Node with given id does not belong to the document" instead of "stale".)
        Errors while the page is in between are retried until the wait ends."""
        self.driver.execute_script("window.__leaving = true")
        action()
        WebDriverWait(self.driver, 20, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script("return window.__leaving !== true && document.readyState === 'complete'")
        )

    def shot(self, name: str) -> Path:
        """A screenshot of the whole page, kept under test-artifacts/console/."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        height = max(600, min(int(size["height"]) + 20, 5000))
        metrics = {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            path = ARTIFACTS / f"{name}.png"
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path
