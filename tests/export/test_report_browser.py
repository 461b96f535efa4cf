"""The report as a person uses it: a real headless chromium opens the file and clicks a trial."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.export.report import build_report
from cellprompt.runs.store import RunStore

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/setup --dev installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright python package")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_leaderboard_trial_code_figure_and_screenshot(browser, run: RunStore, tmp_path: Path) -> None:
    report = build_report([run], tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())

    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[:3] == ["concise", "openai:gpt-x", "5"]
    assert rows.nth(1).locator("td").nth(0).inner_text() == "verbose"
    assert page.locator("img.plot").count() == 3
    assert all(page.evaluate("i => document.images[i].naturalWidth", i) > 0 for i in range(3))

    assert page.locator(".trial-body").count() == 0  # nothing rendered before it is opened
    target = page.locator("#trials tr.trial-row", has_text="concise").first
    target.click()
    body = page.locator(".trial-body")
    assert body.count() == 1
    assert "print('hello from stdout')" in body.locator("pre.code").first.inner_text()
    assert "ZeroDivisionError" in body.locator("pre.error").first.inner_text()
    figure = body.locator("img.figure").first
    figure.scroll_into_view_if_needed()
    assert page.evaluate("el => el.naturalWidth", figure.element_handle()) > 100
    assert "Solid work" in body.inner_text() and '"n_clusters": 42' in body.inner_text()
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000

    target.click()  # closes again
    assert page.locator(".trial-body").count() == 0
    page.fill("#filter", "verbose")
    visible = page.locator("#trials tr.trial-row:visible")
    assert visible.count() == 5 and all("verbose" in t for t in visible.all_inner_texts())
    assert errors == []
    assert all(url.startswith("file://") or url.startswith("data:") for url in requests)
    page.close()
