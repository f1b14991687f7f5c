"""The report opened in a real headless Chromium: loads offline, no JS errors, every chart drew,
the table sorts, a hostile model name stays text. Needs Debian's chromium + chromium-driver
(.ci/run installs them); skipped with the reason when absent, except in CI where it fails."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from report_fixtures import CPU, kernel_cases, model_cases, write_run

from vitbench.report.compare import compare_runs
from vitbench.report.compare_html import write_compare_page
from vitbench.report.html import write_report
from vitbench.report.load import find_runs

pytestmark = pytest.mark.browser

HOSTILE = "<script>alert(1)</script>"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1400,1000"]
SCREENSHOT = Path("/tmp/vitbench-report-screenshot.png")
COMPARE_SCREENSHOT = Path("/tmp/vitbench-compare-screenshot.png")


def _binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver"
                                              if Path("/usr/bin/chromedriver").exists() else None)
    if chromium and driver:
        return chromium, driver
    reason = "headless Chromium not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}; CI must install it (.ci/run does)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def _no_downloads(*_a, **_k):  # Selenium Manager would fetch drivers from the internet
        raise AssertionError("Selenium Manager must not run")

    orig = SeleniumManager.binary_paths
    SeleniumManager.binary_paths = _no_downloads
    opts = webdriver.ChromeOptions()
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        SeleniumManager.binary_paths = orig


def _open(drv, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get_log("browser")  # drop anything from a previous page
    drv.get_log("performance")
    drv.get(path.resolve().as_uri())
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && typeof Plotly === 'object' && "
        "Array.from(document.querySelectorAll('.plotly-graph-div'))"
        ".every(g => g.querySelector('.main-svg'))"))


def _check_clean(drv) -> None:
    """No console errors; no request other than the file itself and inline data."""
    severe = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls, "performance log recorded no request at all (logging not working?)"
    remote = [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert not remote, remote


def _charts_drawn(drv) -> int:
    counts = drv.execute_script(
        "return Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => "
        "[g.id, g.querySelectorAll('.main-svg').length, g.querySelectorAll('.scatterlayer .trace,"
        " .barlayer .trace').length])")
    assert counts
    for div_id, svgs, traces in counts:
        assert svgs >= 1 and traces >= 1, (div_id, svgs, traces)
    return len(counts)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    write_run(root / "h100", "kernels")
    write_run(root / "h100", "model", cases=model_cases(HOSTILE))
    write_run(root / "cpu", "kernels", device=CPU, run_id="20261127T040000Z-0001",
              cases=kernel_cases({"matmul": HOSTILE}))
    out = root / "report.html"
    write_report(find_runs([root / "h100", root / "cpu"]), out)
    return out


def test_report_renders_in_chromium(browser, report_file):
    from selenium.common.exceptions import NoAlertPresentException

    _open(browser, report_file)
    n = _charts_drawn(browser)
    assert n == browser.execute_script("return document.querySelectorAll('.chart').length")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018  (the hostile name must not have run)
    assert HOSTILE in browser.execute_script("return document.body.innerText")
    # the interpreter run says so on each of its charts
    titles = browser.execute_script(
        "return Array.from(document.querySelectorAll('.plotly-graph-div .gtitle'))"
        ".map(t => t.textContent)")
    assert sum("NOT REPRESENTATIVE" in t for t in titles) >= 3
    _check_clean(browser)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(height, 16000))
    browser.save_screenshot(str(SCREENSHOT))
    browser.set_window_size(1400, 1000)
    assert SCREENSHOT.stat().st_size > 10_000


def test_table_sorts_on_header_click(browser, report_file):
    _open(browser, report_file)
    table = browser.find_elements("css selector", "table.rows.sortable[id^=rows-]")[0]
    headers = table.find_elements("css selector", "thead th")
    col = [h.text for h in headers].index("median ms")

    def column() -> list[str]:
        return browser.execute_script(
            "return Array.from(arguments[0].tBodies[0].rows).map(r => "
            "r.cells[arguments[1]].getAttribute('data-v'))", table, col)

    before = column()
    browser.execute_script("arguments[0].scrollIntoView()", headers[col])
    headers[col].click()
    up = column()
    nums = [float(v) for v in up if v]
    assert nums == sorted(nums) and up[len(nums):] == [""] * (len(up) - len(nums))
    assert up != before  # the fixture rows are not in median order to begin with
    assert headers[col].get_attribute("aria-sort") == "ascending"
    headers[col].click()
    down = [float(v) for v in column() if v]
    assert down == sorted(nums, reverse=True)
    _check_clean(browser)


def test_compare_page_renders_in_chromium(browser, tmp_path):
    base = write_run(tmp_path / "base", "kernels", seed=1)
    new = write_run(tmp_path / "new", "kernels", seed=2, slow={"layernorm": 1.2},
                    run_id="20261127T061500Z-4b4b")
    cmp_ = compare_runs(find_runs([base]), find_runs([new]), resamples=500)
    out = tmp_path / "compare.html"
    write_compare_page(cmp_, out)
    _open(browser, out)
    assert _charts_drawn(browser) == 4  # geomeans + matmul, layernorm, attention
    _check_clean(browser)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(height, 16000))
    browser.save_screenshot(str(COMPARE_SCREENSHOT))
    browser.set_window_size(1400, 1000)
