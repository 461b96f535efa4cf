"""The report as a person uses it: a real headless chromium opens the file and clicks a trial."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.export.report import build_report, trial_anchor
from cellprompt.records.run import ExecutionRecord
from cellprompt.runs.store import RunStore
from tests.export.run_factory import make_run
from tests.export.test_report_sections import paired_run

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


def _open(browser, report: Path, fragment: str = ""):  # type: ignore[no-untyped-def]
    """A page on `report` that records every request, page error and dialog."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.seen = {"requests": [], "errors": [], "dialogs": []}
    page.on("request", lambda r: page.seen["requests"].append(r.url))
    page.on("pageerror", lambda e: page.seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (page.seen["dialogs"].append(d.message), d.dismiss()))
    page.goto(report.as_uri() + fragment)
    return page


def _clean(page) -> None:  # type: ignore[no-untyped-def]
    assert page.seen["errors"] == [] and page.seen["dialogs"] == []
    assert all(u.startswith(("file://", "data:")) for u in page.seen["requests"]), page.seen["requests"]
    page.close()


def _rgb(page, locator) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    colour = page.evaluate("el => getComputedStyle(el).backgroundColor", locator.element_handle())
    return tuple(int(v) for v in colour[colour.index("(") + 1 : -1].split(",")[:3])


def test_heat_maps_categories_and_paired_comparisons_render(
    browser, run: RunStore, tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    page = _open(browser, build_report([run], tmp_path / "report.html"))
    heat = page.locator("#heat-tasks")
    assert heat.is_visible()
    assert heat.locator("th.category").all_inner_texts() == ["clustering", "qc"]
    good = heat.locator("tbody tr", has_text="concise").locator("td").nth(0)
    bad = heat.locator("tbody tr", has_text="verbose").locator("td").nth(0)
    assert good.inner_text().split() == ["0.80", "n=3"] and bad.inner_text().split() == ["0.20", "n=3"]
    g, b = _rgb(page, good), _rgb(page, bad)
    assert g[1] > g[0] and b[0] > b[1]  # green for a high mean, red for a low one
    assert page.locator("#heat-categories").is_visible()
    assert page.locator("#per-task tr.category-row").all_inner_texts()[0].startswith("clustering: mean score")
    _clean(page)

    page = _open(browser, build_report([paired_run(tmp_path / "paired", cells)], tmp_path / "paired.html"))
    row = page.locator("#paired-prompts tbody tr")
    assert row.count() == 1 and row.is_visible() and row.locator("td").last.inner_text() == "A better"
    verdict = page.locator("#paired-models tbody tr td").last.inner_text()
    assert verdict == "no clear difference (CI includes 0)"
    _clean(page)


def test_different_task_sets_are_warned_about_at_the_top(
    browser, tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    a = make_run(tmp_path, cells, run_id="run-a", scores={("p", "m", t): [1] for t in ("t_cluster", "t_qc")})
    b = make_run(tmp_path, cells, run_id="run-b", scores={("p", "m", t): [0] for t in ("t_cluster", "t_x")})
    page = _open(browser, build_report([a, b], tmp_path / "report.html"))
    warning = page.locator("#task-sets[role=alert]")
    assert warning.is_visible() and warning.bounding_box()["y"] < 300  # above the fold
    assert "run-a lacks t_x; run-b lacks t_qc" in warning.inner_text()
    _clean(page)


def test_a_trial_link_opens_that_trial(browser, run: RunStore, tmp_path: Path) -> None:
    report = build_report([run], tmp_path / "report.html")
    target = next(t for t in run.trials() if t.spec.prompt_id == "verbose" and t.spec.replicate == 2)
    page = _open(browser, report, "#" + trial_anchor(target.trial_id))
    row = page.locator(f"#trials tr.trial-row[data-trial-id='{target.trial_id}']")
    assert "open" in (row.get_attribute("class") or "") and page.locator(".trial-body").count() == 1
    assert f"trial {target.trial_id}" in page.locator(".trial-body .meta").first.inner_text()
    assert row.bounding_box()["y"] < 900  # scrolled to
    other = next(t for t in run.trials() if t.spec.prompt_id == "concise" and t.spec.task_id == "t_qc")
    page.locator(f"#per-task a[href='#{trial_anchor(other.trial_id)}']").click()
    page.wait_for_function("n => document.querySelectorAll('.trial-body').length === n", arg=2)
    assert page.evaluate("location.hash") == "#" + trial_anchor(other.trial_id)
    assert "open" in (page.locator(f"#{trial_anchor(other.trial_id)}").get_attribute("class") or "")
    _clean(page)


def test_code_is_syntax_highlighted_without_fetching_anything(browser, run: RunStore, tmp_path: Path) -> None:
    page = _open(browser, build_report([run], tmp_path / "report.html"))
    page.locator("#trials tr.trial-row").first.click()
    code = page.locator(".trial-body pre.code").first
    keyword = code.locator("span.kn").first  # `import`
    assert keyword.inner_text() == "import" and "print('hello from stdout')" in code.inner_text()
    colour = "el => getComputedStyle(el).color"
    assert page.evaluate(colour, keyword.element_handle()) != page.evaluate(colour, code.element_handle())
    _clean(page)


def test_html_outputs_render_as_tables_and_hostile_html_is_inert(
    browser, tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    store = make_run(tmp_path, cells, scores={("p", "m", "t"): [1.0]}, judge=False)
    record = store.trials()[0]
    record.turns[0].executions += [cells["frame"], cells["hostile"]]
    store.append_trial(record)
    page = _open(browser, build_report([store], tmp_path / "report.html"))
    page.locator("#trials tr.trial-row").first.click()
    outputs = page.locator(".trial-body .html-output")
    assert outputs.count() == 2
    frame = outputs.nth(0).locator("table")
    assert frame.is_visible() and "340" in frame.locator("td").all_inner_texts()
    assert outputs.nth(1).locator("td").inner_text() == "safe cell"
    outputs.nth(1).get_by_text("click me").click()
    outputs.nth(1).get_by_text("styled").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    forbidden = "script, iframe, img, svg, link, a, form, input, [style], [onclick], [onerror], [id]"
    assert outputs.locator(forbidden).count() == 0
    _clean(page)
