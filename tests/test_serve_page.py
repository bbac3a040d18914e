"""Tests of lenetish serve's page (lenetish/serve/page.html) in a real browser: Debian's chromium.

The browser draws a seven on the canvas with mouse moves, as a person would, and must show
the label 7. ``python -m tests.test_serve_page`` takes the screenshot the docs show
(docs/_static/serve_page.png).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from lenetish.serve import background_server, create_app

SCREENSHOT = Path(__file__).parents[1] / "docs" / "_static" / "serve_page.png"
#: A seven in offsets from the canvas centre (the canvas is 280x280): a bar, then a stroke down.
SEVEN = [(-70, -85), (-20, -88), (30, -88), (75, -90), (55, -40), (35, 10), (15, 60), (0, 100)]


def _browser_paths() -> tuple[str, str] | None:
    """Chromium and its driver, if both are installed."""
    browser = next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))),
        None,
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_browser() -> Any:
    """A headless chromium driven through selenium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = _browser_paths()
    assert paths is not None
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=900,700", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))


def draw(driver: Any, url: str, stroke: list[tuple[int, int]]) -> str:
    """Open the page at ``url``, draw ``stroke`` with the mouse; return the label shown."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    pad = driver.find_element(By.ID, "pad")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "model").text)
    actions = ActionChains(driver).move_to_element_with_offset(pad, *stroke[0]).click_and_hold()
    previous = stroke[0]
    for point in stroke[1:]:
        actions.move_by_offset(point[0] - previous[0], point[1] - previous[1])
        previous = point
    actions.release().perform()
    label = driver.find_element(By.ID, "label")
    WebDriverWait(driver, 30).until(
        lambda d: label.text != "?" and d.execute_script("return !busy && !stale && !timer")
    )
    return str(label.text)


@pytest.fixture(scope="module")
def page() -> Iterator[tuple[Any, str]]:
    """A browser and the URL of a server with the shipped default weights."""
    pytest.importorskip("selenium", reason="the browser test needs selenium (the test extra)")
    if _browser_paths() is None:
        pytest.skip(
            "the browser test needs Debian's chromium and chromium-driver (apt-get install "
            "chromium chromium-driver): 'chromium' or 'chromedriver' is not on PATH"
        )
    driver = start_browser()
    try:
        with background_server(create_app()) as url:
            yield driver, url
    finally:
        driver.quit()


def test_a_seven_drawn_with_the_mouse_is_shown_as_7(page: tuple[Any, str], tmp_path: Path) -> None:
    """Drawing a seven on the canvas shows the label 7 and a bar chart; a screenshot is saved."""
    from selenium.webdriver.common.by import By

    driver, url = page
    assert draw(driver, url, SEVEN) == "7"
    rows = driver.find_elements(By.CSS_SELECTOR, "#bars > span")
    best = driver.find_elements(By.CSS_SELECTOR, "#bars > .best")
    assert len(rows) == 20  # a name and a percentage for each of the ten classes
    assert best[0].text == "7"  # the highlighted bar is the label's
    assert driver.save_screenshot(str(tmp_path / "serve_page.png"))
    assert Image.open(tmp_path / "serve_page.png").size[0] > 0


def test_an_uploaded_file_is_shown_with_its_label(page: tuple[Any, str], tmp_path: Path) -> None:
    """Choosing an image file in the upload box lists it with its label."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, url = page
    one = Image.new("L", (80, 80), 255)
    ImageDraw.Draw(one).line((40, 10, 40, 70), fill=0, width=8)
    one.save(tmp_path / "one.png")
    driver.get(url)
    driver.find_element(By.ID, "upload").send_keys(str(tmp_path / "one.png"))
    files = driver.find_element(By.ID, "files")
    WebDriverWait(driver, 30).until(lambda d: files.text)
    assert files.text.startswith("one.png: 1 (")
    assert driver.find_element(By.ID, "label").text == "1"


if __name__ == "__main__":  # the screenshot of the docs: python -m tests.test_serve_page
    if _browser_paths() is None:
        sys.exit("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    browser = start_browser()
    try:
        with background_server(create_app()) as address:
            shown = draw(browser, address, SEVEN)
            browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.quit()
    print(f"drew a seven, the page shows {shown}; screenshot written to {SCREENSHOT}")
