"""The search page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
against a real ``ff-serve`` on a loopback port."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from indexing.build import build_index
from service.launcher import LocalServer
from tests.conftest import REPO, TINY_DOCS, write_beir

pytestmark = pytest.mark.java


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    pytest.skip("no chromium binary found (apt-get install chromium chromium-driver, or set CHROMIUM=/path); "
                "the headless-browser test of the search page is skipped", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (after the skip: selenium is useless without a browser)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1100,900"]
HOSTILE = {"_id": "x<b>1</b>", "title": '<img src=x onerror="window.pwned=1">Markup',
           "text": "A snippet with markup: <script>window.pwned=2</script> &amp; & \"quotes\" 'too'."}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """ff-serve with the tiny corpus (BM25 + vectors) and one document made of HTML."""
    root = tmp_path_factory.mktemp("browser")
    build_index(write_beir(root / "tiny", docs=[*TINY_DOCS, HOSTILE]), root / "index", encoder="default",
                progress=False)
    with LocalServer({"tiny": root / "index"}, threads=2, args=["--candidates", "100"], cwd=REPO) as running:
        yield running
    assert running.returncode == 0, running.log[-3000:]
    assert "Traceback" not in running.log and "[ERROR]" not in running.log


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver_path = shutil.which("chromedriver") or next(
        (p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver") if Path(p).exists()), None)
    if driver_path is None:  # a browser without its driver is a broken install, not a reason to skip
        pytest.fail(f"{CHROMIUM} is installed but chromedriver is not (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout: float = 20):
    return WebDriverWait(driver, timeout).until(condition)


def open_page(browser, url: str) -> None:
    browser.get(url)
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def titles(browser) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit .title")]


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_typing_a_query_shows_ranked_results_and_a_linkable_url(browser, server, tmp_path):
    open_page(browser, server.url + "/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("pasta water")
    box.send_keys(Keys.ENTER)
    wait(browser, lambda d: titles(d))
    assert titles(browser)[0] == "Cooking"
    assert "q=pasta+water" in browser.current_url and "mode=ff" in browser.current_url
    first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    assert first.find_element(By.CSS_SELECTOR, ".snippet").text == "Boil the pasta in salted water for ten minutes."
    assert "score" in first.find_element(By.CSS_SELECTOR, ".scores").text
    status = browser.find_element(By.ID, "status").text
    assert status.startswith("1 result in ") and "encode" in status and "rerank" in status
    screenshot = tmp_path / "search-page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 5000
    assert console_errors(browser) == []  # no script error, nothing refused by the Content-Security-Policy


def test_a_link_runs_its_search_and_the_controls_follow_the_url(browser, server):
    open_page(browser, server.url + "/?q=dense+vector+forward+index&mode=bm25&k=2")
    wait(browser, lambda d: len(titles(d)) == 2)
    assert titles(browser) == ["Forward indexes", "Dense retrieval"]
    assert browser.find_element(By.ID, "mode-bm25").is_selected()
    assert not browser.find_element(By.ID, "alpha").is_enabled()  # alpha is for ff mode only
    assert browser.find_element(By.ID, "k").get_attribute("value") == "2"

    browser.find_element(By.CSS_SELECTOR, "label[for=mode-ff]").click()  # changing the mode searches again
    wait(browser, lambda d: "mode=ff" in d.current_url and d.find_elements(By.CSS_SELECTOR, ".hit .bar"))
    assert "alpha=0.35" in browser.current_url and browser.find_element(By.ID, "alpha").is_enabled()

    browser.back()  # the previous URL, and its search, come back
    wait(browser, lambda d: "mode=bm25" in d.current_url and browser.find_element(By.ID, "mode-bm25").is_selected())
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, ".hit .bar") and len(titles(d)) == 2)
    assert console_errors(browser) == []


def test_document_text_is_shown_as_text_never_as_html(browser, server):
    open_page(browser, server.url + "/?q=snippet+markup+quotes&mode=bm25")
    wait(browser, lambda d: titles(d))
    hit = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    assert hit.find_element(By.CSS_SELECTOR, ".title").text == HOSTILE["title"]
    assert hit.find_element(By.CSS_SELECTOR, ".docno").text == HOSTILE["_id"]
    assert hit.find_element(By.CSS_SELECTOR, ".snippet").text == HOSTILE["text"]
    assert browser.find_elements(By.CSS_SELECTOR, "#results img, #results script, .title *, .docno *, .snippet *") == []
    assert browser.execute_script("return window.pwned === undefined")


def test_a_refused_search_shows_the_servers_message(browser, server):
    open_page(browser, server.url + "/?q=pasta&k=500")
    status = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#status.error"))
    assert status.text == "k must be an integer from 1 to 100, got 500"
    assert titles(browser) == []


def test_hybrid_mode_adds_the_dense_candidates(browser, server):
    console_errors(browser)  # drop what earlier tests logged (a refused search is a console error)
    open_page(browser, server.url + "/?q=pasta+water&mode=ff")
    wait(browser, lambda d: len(titles(d)) == 1)  # BM25 matches one document
    browser.find_element(By.CSS_SELECTOR, "label[for=mode-hybrid]").click()  # the mode switch searches again
    wait(browser, lambda d: "mode=hybrid" in d.current_url and len(titles(d)) > 1)
    assert titles(browser)[0] == "Cooking" and browser.find_element(By.ID, "mode-hybrid").is_selected()
    assert "alpha=0.35" in browser.current_url and browser.find_element(By.ID, "alpha").is_enabled()
    assert len(browser.find_elements(By.CSS_SELECTOR, ".hit .bar")) == len(titles(browser))
    assert "100 BM25 + 100 dense candidates" in browser.find_element(By.ID, "status").text
    assert console_errors(browser) == []
