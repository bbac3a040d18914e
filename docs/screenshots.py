"""Screenshots of the built documentation at 1280 and 390 px, and a check for horizontal overflow.

It builds nothing: build the html first (``sphinx-build -b html docs docs/_build/html``), then

    python docs/screenshots.py [--html docs/_build/html] [--out docs/_static/screenshots]

It opens every page of the build in headless Chromium (Debian: ``apt-get install chromium
chromium-driver``; Python: ``pip install selenium``) at 1280 and at 390 px wide, and fails
(exit status 1) when a page is wider than the window (``document.scrollWidth`` above the
window's width) or, at 1280 px, a table is wider than the column that holds it. The index, the
quickstart and the API index are saved as PNG files (the top of each page, one screen high).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
PICTURED = {"index.html": "index", "quickstart.html": "quickstart", "api.html": "api-index"}
# Sphinx's own index pages: two columns of entries that may be long names.
GENERATED = {"genindex.html", "py-modindex.html", "search.html"}
PAGE_WIDTH = "return [document.documentElement.scrollWidth, window.innerWidth];"
WIDE_TABLES = """
return Array.from(document.querySelectorAll('article table')).filter(
    table => table.getBoundingClientRect().width > table.parentElement.clientWidth + 1
).map(table => (table.querySelector('th, td') || table).textContent.trim().slice(0, 40));
"""


def browser(width: int, height: int) -> webdriver.Chrome:
    """A headless Chromium whose window (viewport) is ``width`` x ``height`` CSS pixels."""
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={max(width, 800)},{height}")
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    # Headless windows have a minimum width: set the viewport itself, as a phone would have it.
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


def check(html: Path, out: Path) -> list[str]:
    """Visit every page at each width; save the pictured pages; return the problems found."""
    pages = sorted(path for path in html.rglob("*.html") if "_modules" not in path.parts)
    problems: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in WIDTHS.items():
        driver = browser(width, height)
        try:
            for page in pages:
                driver.get(page.resolve().as_uri())
                scroll, inner = driver.execute_script(PAGE_WIDTH)
                name = page.relative_to(html).as_posix()
                if scroll > inner:
                    problems.append(f"{name} at {width} px: the page is {scroll} px wide")
                if label == "desktop" and name not in GENERATED:
                    for table in driver.execute_script(WIDE_TABLES):
                        problems.append(f"{name} at {width} px: a table is too wide ({table!r})")
                if name in PICTURED:
                    driver.save_screenshot(str(out / f"{PICTURED[name]}-{width}.png"))
        finally:
            driver.quit()
    return problems


def main() -> int:
    """Parse the options, check every page, print what overflows."""
    root = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=root / "_build" / "html")
    parser.add_argument("--out", type=Path, default=root / "_static" / "screenshots")
    args = parser.parse_args()
    if not (args.html / "index.html").is_file():
        print(f"no built documentation at {args.html}: build the html first", file=sys.stderr)
        return 2
    problems = check(args.html, args.out)
    for problem in problems:
        print(problem)
    for picture in sorted(args.out.glob("*.png")):
        print(f"{picture}: {picture.stat().st_size / 1000:.0f} KB")
    print("no overflow" if not problems else f"{len(problems)} pages or tables overflow")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
