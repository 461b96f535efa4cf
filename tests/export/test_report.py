from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

from cellprompt.export.report import build_report
from cellprompt.jsonl import TruncatedLineWarning
from cellprompt.records.run import ExecutionRecord
from cellprompt.runs.store import RunStore
from tests.export.run_factory import make_run, make_trial


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cellprompt.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def trial_blocks(page: str) -> list[dict]:
    return [
        json.loads(m)
        for m in re.findall(
            r'<script type="application/json" id="trial-data-\d+">(.*?)</script>', page, flags=re.S
        )
    ]


def test_report_is_self_contained_and_complete(run: RunStore, tmp_path: Path) -> None:
    page = build_report([run], tmp_path / "r.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from a network
    assert "default-src 'none'" in page  # and the browser is told to refuse it anyway
    leaderboard = page.split('id="leaderboard"')[1].split("</table>")[0]
    assert leaderboard.count("<tr>") == 3  # header + two prompt × model rows
    assert leaderboard.index("concise") < leaderboard.index("verbose")  # best first
    assert page.count('class="plot"') == 3 and page.count("data:image/png;base64,") >= 3
    blocks = trial_blocks(page)
    assert len(blocks) == len(run.trials()) == 10
    body = next(b for b in blocks if b["score"] == 1.0)
    outputs = [o for t in body["turns"] for x in t["execs"] for o in x["outputs"]]
    assert {o["k"] for o in outputs} == {"stream", "error", "img", "text"}
    assert any(
        "ZeroDivisionError" in o["text"] and "\x1b" not in o["text"] for o in outputs if o["k"] == "error"
    )
    assert body["judge"]["ok"] and "Solid work" in body["judge"]["samples"][0]["comments"]
    assert "Spearman" in page and "per-task" in page


def test_agent_output_cannot_break_out_of_the_page(tmp_path: Path, cells: dict[str, ExecutionRecord]) -> None:
    store = make_run(tmp_path / "outputs", cells, scores={("p", "m", "t"): [1.0]}, judge=False)
    record = store.trials()[0]
    record.turns[0].assistant_text = "</script><script>alert(1)</script><!-- {{BODY}}"
    store.append_trial(record)
    page = build_report([store], tmp_path / "r.html").read_text()
    assert "<script>alert(1)" not in page
    assert trial_blocks(page)[0]["turns"][0]["text"].startswith("</script><script>alert(1)")


def test_several_runs_are_compared_and_extra_sections_added(
    tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    a = make_run(tmp_path / "outputs", cells, run_id="run-a", scores={("p", "m", "t"): [1.0, 0.5]})
    b = make_run(tmp_path / "outputs", cells, run_id="run-b", scores={("p", "m", "t"): [0.0, 0.1]})
    page = build_report(
        [a, b], tmp_path / "r.html", extra_sections=[("Evolution", '<p id="evo">seed → best</p>')]
    ).read_text()
    leaderboard = page.split('id="leaderboard"')[1].split("</table>")[0]
    assert "<th>run</th>" in leaderboard and leaderboard.index("run-a") < leaderboard.index("run-b")
    assert '<h2>Evolution</h2><p id="evo">seed → best</p>' in page
    assert len(trial_blocks(page)) == 4


def test_truncated_trials_line_is_skipped_with_a_warning(
    tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    store = make_run(tmp_path / "outputs", cells, scores={("p", "m", "t"): [1.0, 0.0]})
    line = make_trial(
        store, cells, index=9, prompt_id="p", model="m", task_id="t", score=1.0
    ).model_dump_json()
    with store.trials_path.open("a") as fh:
        fh.write(line[: len(line) // 2])
    with pytest.warns(TruncatedLineWarning):
        page = build_report([store], tmp_path / "r.html").read_text()
    assert len(trial_blocks(page)) == 2
    result = cli("report", str(store.path), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["by_prompt_model"][0]["trials"] == 2
    assert "truncated" in result.stderr


def test_cli_report_formats_and_bad_runs(run: RunStore, tmp_path: Path) -> None:
    table = cli("report", str(run.path), "--format", "table")
    assert table.returncode == 0 and "Leaderboard" in table.stdout and "concise" in table.stdout
    html_run = cli("report", str(run.path), "-o", str(tmp_path / "x" / "rep.html"))
    assert html_run.returncode == 0 and (tmp_path / "x" / "rep.html").stat().st_size > 10_000
    missing = cli("report", str(tmp_path / "nope"))
    assert (
        missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    (tmp_path / "empty").mkdir()
    not_run = cli("notebook", str(tmp_path / "empty"))
    assert not_run.returncode == 1 and "not a run folder" in not_run.stderr
    bad_format = cli("report", str(run.path), "--format", "xml")
    assert bad_format.returncode == 2 and "--format xml" in bad_format.stderr


def test_cli_notebook_writes_one_per_trial(tmp_path: Path, cells: dict[str, ExecutionRecord]) -> None:
    store = make_run(tmp_path / "outputs", cells, scores={("p", "m", "t"): [1.0, 0.0]})
    ids = sorted(t.trial_id for t in store.trials())
    one = cli("notebook", str(store.path), "--trial", ids[0])
    assert one.returncode == 0, one.stderr
    assert sorted(p.stem for p in (store.path / "notebooks").glob("*.ipynb")) == [ids[0]]
    every = cli("notebook", str(store.path))
    assert every.returncode == 0
    for tid in ids:
        nbformat.validate(nbformat.read(str(store.path / "notebooks" / f"{tid}.ipynb"), as_version=4))
    unknown = cli("notebook", str(store.path), "--trial", "zzz")
    assert unknown.returncode == 2 and "no trial zzz" in unknown.stderr


def test_report_of_a_run_with_no_trials(tmp_path: Path) -> None:
    from cellprompt.records.run import RunManifest

    store = RunStore.create(tmp_path, RunManifest(run_id="empty"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = build_report([store], tmp_path / "r.html").read_text()
    assert "0 trials" in page and 'class="plot"' not in page
