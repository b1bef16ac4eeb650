"""Airflow 3's trigger form, driven as a person would: clicks and keystrokes in Debian's Chromium (Selenium)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# What the workplace's closed network needs: no background connections, no sandbox as root.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,2600",
]


def why_no_browser() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    return (
        f"no {' or '.join(missing)}: apt-get install chromium chromium-driver (scripts/setup.sh --test does)"
        if missing
        else None
    )


def chromium(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    return driver


class TriggerForm:
    """The "Trigger Dag" dialog of one DAG. The form re-renders while it is edited, so every action finds its
    element again (and retries while React swaps it)."""

    def __init__(self, driver: WebDriver, base_url: str, dag_id: str, shots: Path) -> None:
        self.d, self.base_url, self.dag_id, self.shots = driver, base_url, dag_id, shots
        shots.mkdir(parents=True, exist_ok=True)

    def open(self) -> None:
        self.d.get(f"{self.base_url}/dags/{self.dag_id}")
        self._click(By.XPATH, "//button[normalize-space(.)='Trigger']")
        self.d.find_element(By.XPATH, "//*[@role='dialog']//*[normalize-space(text())='Run Parameters']")

    def _retry(self, action: Callable[[], Any]) -> Any:
        for _ in range(40):
            try:
                return action()
            except (StaleElementReferenceException, ElementClickInterceptedException):
                time.sleep(0.25)
        return action()

    def _click(self, by: str, selector: str) -> None:
        self._retry(lambda: self.d.find_element(by, selector).click())

    def _keys(self, *keys: str) -> None:
        ActionChains(self.d).send_keys(*keys).perform()
        time.sleep(0.2)

    def _select_all(self) -> None:
        ActionChains(self.d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()

    def section(self, title: str) -> None:
        """Open an accordion section of the form (Airflow shows one at a time)."""
        self._click(By.XPATH, f"//*[@role='dialog']//button[normalize-space(.)='{title}']")
        time.sleep(0.5)

    def pick(self, name: str, values: list[str]) -> None:
        """A multi-select: clear it with its x, then type each value and press Enter."""
        self._click(By.CSS_SELECTOR, f"#element_{name} button[aria-label='Clear selected options']")
        for value in values:
            self._click(By.CSS_SELECTOR, f"#element_{name} input")
            self._keys(value)
            self._keys(Keys.ENTER)
        self._keys(Keys.TAB)

    def clear_choices(self, name: str) -> None:
        self._click(By.CSS_SELECTOR, f"#element_{name} button[aria-label='Clear selected options']")

    def choose(self, name: str, value: str) -> None:
        """A drop-down: type the option and press Enter."""
        self._click(By.CSS_SELECTOR, f"#element_{name} input")
        self._keys(value)
        self._keys(Keys.ENTER)

    def json_list(self, name: str, items: str) -> None:
        """The JSON list editor: replace its text with `[items]`. It re-formats itself at every keystroke that
        makes valid JSON (moving the cursor), so the text stays invalid ("[x1, 4]") until the last key."""
        self._click(By.CSS_SELECTOR, f"#element_{name} .view-lines")
        self._select_all()
        self._keys(Keys.DELETE)  # the editor now shows "[]"
        time.sleep(0.3)
        ActionChains(self.d).key_down(Keys.CONTROL).send_keys(Keys.END).key_up(Keys.CONTROL).perform()
        self._keys(Keys.LEFT, "x" + items)
        ActionChains(self.d).key_down(Keys.CONTROL).send_keys(Keys.HOME).key_up(Keys.CONTROL).perform()
        self._keys(Keys.RIGHT, Keys.DELETE)

    def json_list_from_empty(self, name: str, items: str) -> None:
        """The JSON list editor of a list that defaults to empty: it is blank once cleared, and it closes a bracket
        as it is typed; "x" keeps the text invalid (so not re-formatted) until the last key removes it."""
        self._click(By.CSS_SELECTOR, f"#element_{name} .view-lines")
        self._select_all()
        self._keys(Keys.DELETE)
        time.sleep(0.3)
        self._keys("x[" + items)
        ActionChains(self.d).key_down(Keys.CONTROL).send_keys(Keys.HOME).key_up(Keys.CONTROL).perform()
        self._keys(Keys.DELETE)

    def number(self, name: str, value: float) -> None:
        self._click(By.CSS_SELECTOR, f"[id='number-input:element_{name}'] input")
        self._select_all()
        self._keys(Keys.BACKSPACE, str(value))

    def number_shown(self, name: str) -> str:
        return str(
            self.d.find_element(By.CSS_SELECTOR, f"[id='number-input:element_{name}'] input").get_attribute("value")
        )

    def text(self, name: str, value: str) -> None:
        self._click(By.ID, f"element_{name}")
        self._select_all()
        self._keys(Keys.BACKSPACE, value)

    def lines(self, name: str, values: list[str]) -> None:
        """A list of strings without choices: a text area, one item per line."""
        self._click(By.ID, f"element_{name}")
        self._select_all()
        self._keys(Keys.BACKSPACE)
        for i, value in enumerate(values):
            self._keys(*([Keys.SHIFT + Keys.ENTER] if i else []), value)

    def switch(self, name: str) -> None:
        self._click(By.CSS_SELECTOR, f"[id='switch:element_{name}']")

    def untick_unpause(self) -> None:
        box = self.d.find_element(By.XPATH, "//label[contains(., 'Unpause')]//input[@type='checkbox']")
        if box.is_selected():
            self._click(By.XPATH, "//label[contains(., 'Unpause')]")
        assert not self.d.find_element(
            By.XPATH, "//label[contains(., 'Unpause')]//input[@type='checkbox']"
        ).is_selected()

    def trigger_button(self) -> Any:
        return self.d.find_elements(By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Trigger']")[-1]

    def submit(self) -> None:
        self._retry(lambda: self.trigger_button().click())

    def error(self, timeout: float = 15) -> str:
        """The message Airflow shows when it refuses the trigger."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.d.find_elements(
                By.XPATH, "//*[@role='dialog']//*[contains(text(), 'Invalid input for param')]/.."
            )
            if found:
                return str(found[0].text)
            time.sleep(0.3)
        self.shot("no-refusal-shown")
        raise AssertionError(f"no refusal message shown (see {self.shots / 'no-refusal-shown.png'})")

    def field_messages(self) -> list[str]:
        """The form's own messages under fields (e.g. "This field is required")."""
        return [e.text for e in self.d.find_elements(By.CSS_SELECTOR, "[data-part='error-text']") if e.text]

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.d.save_screenshot(str(path))
        return path
