"""The report's analysis sections, read from the HTML it writes: paired comparisons, heat maps,
categories, task-set warnings, trial anchors, sanitised HTML outputs and left-out plots."""

from __future__ import annotations

import re
from pathlib import Path

from cellprompt.export.report import build_report, trial_anchor
from cellprompt.grading.stats import bootstrap_ci
from cellprompt.records.run import ExecutionRecord
from cellprompt.runs.store import RunStore
from tests.export.run_factory import make_run
from tests.export.test_report import trial_blocks


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cell texts of each body row of one table (tags stripped, entities left as written)."""
    body = page.split(f'id="{table_id}"')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    ]


def paired_run(outputs: Path, cells: dict[str, ExecutionRecord]) -> RunStore:
    """Prompts A and B on model m1, and A on m2, over two tasks with three replicates each."""
    return make_run(outputs, cells, judge=False, scores={
        ("A", "m1", "t_cluster"): [1.0, 0.9, 1.0],
        ("A", "m1", "t_qc"): [0.8, 1.0, 0.7],
        ("B", "m1", "t_cluster"): [0.2, 0.1, 0.4],
        ("B", "m1", "t_qc"): [0.5, 0.3, 0.6],
        ("A", "m2", "t_cluster"): [0.9, 1.0, 0.8],
        ("A", "m2", "t_qc"): [0.9, 0.8, 0.8],
    })


def test_paired_differences_of_prompts_and_models_with_a_paired_bootstrap_ci(
    tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    page = build_report([paired_run(tmp_path, cells)], tmp_path / "r.html").read_text()
    a_minus_b = [1.0 - 0.2, 0.9 - 0.1, 1.0 - 0.4, 0.8 - 0.5, 1.0 - 0.3, 0.7 - 0.6]
    low, high = bootstrap_ci(a_minus_b, seed=0)
    [prompts] = table_rows(page, "paired-prompts")  # A × m2 has no B partner: only A vs B, over m1
    assert prompts[:2] == ["A", "B"]
    assert prompts[2] == f"+{sum(a_minus_b) / 6:.3f}"
    assert prompts[3] == f"[{low:.3f}, {high:.3f}]" and low > 0
    assert prompts[4:8] == ["6", "2", "6 / 0 / 0", "m1"] and prompts[8] == "A better"
    [models] = table_rows(page, "paired-models")  # m1 vs m2 over prompt A only
    m1_minus_m2 = [0.1, -0.1, 0.2, -0.1, 0.2, -0.1]
    low, high = bootstrap_ci(m1_minus_m2, seed=0)
    assert models[:2] == ["m1", "m2"] and models[3] == f"[{low:.3f}, {high:.3f}]" and low < 0 < high
    assert models[4:8] == ["6", "2", "3 / 0 / 3", "A"]
    assert models[8] == "no clear difference (CI includes 0)"


def test_no_ci_at_small_n_anywhere_in_the_report(tmp_path: Path, cells: dict[str, ExecutionRecord]) -> None:
    store = make_run(tmp_path, cells, scores={("A", "m", "t_cluster"): [1.0], ("B", "m", "t_cluster"): [0.0]})
    page = build_report([store], tmp_path / "r.html").read_text()
    [pair] = table_rows(page, "paired-prompts")
    assert pair[3] == "n too small (n=1)" and pair[8].startswith("too few pairs to tell (n=1")
    assert [row[5] for row in table_rows(page, "leaderboard")] == ["n too small (n=1)"] * 2
    assert [row[5] for row in table_rows(page, "judge-ranking")] == ["n too small (n=1)"] * 2
    # no interval whose bounds are equal — [1.000, 1.000] reads as certainty — in any table
    assert not re.search(r"\[(-?[0-9.]+), \1\]", page.split("<script")[0])


def test_heat_map_of_prompts_by_tasks_grouped_by_category(run: RunStore, tmp_path: Path) -> None:
    page = build_report([run], tmp_path / "r.html").read_text()
    heat = page.split('id="heat-tasks"')[1].split("</table>")[0]
    assert re.findall(r'class="category">(\w+)<', heat) == ["clustering", "qc"]
    rows = {r[0]: r[1:] for r in table_rows(page, "heat-tasks")}
    assert rows == {
        "concise × openai:gpt-x": ["0.80 n=3", "0.50 n=2"],  # the errored trial counts 0
        "verbose × anthropic:claude-x": ["0.20 n=3", "0.60 n=2"],
    }
    by_category = {r[0]: r[1:] for r in table_rows(page, "heat-categories")}
    assert by_category == {
        "concise × openai:gpt-x": ["0.80 n=3", "0.50 n=2"],
        "verbose × anthropic:claude-x": ["0.20 n=3", "0.60 n=2"],
    }


def test_per_task_table_grouped_by_category_with_category_means(
    tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    store = make_run(tmp_path, cells, judge=False, categories={"t_a": "clustering", "t_b": "clustering",
                                                               "t_c": "qc"}, scores={
        ("p", "m", "t_c"): [1.0, 0.5],
        ("p", "m", "t_a"): [0.0],
        ("p", "m", "t_b"): [1.0, 1.0, 0.5],
        ("p", "m", "t_x"): [0.25],  # its task file is gone: 'other'
    })
    page = build_report([store], tmp_path / "r.html").read_text()
    rows = table_rows(page, "per-task")
    headers = [r[0] for r in rows if len(r) == 1]
    assert headers == [
        "clustering: mean score 0.625 over 4 trials of 2 task(s)",
        "other: mean score 0.250 over 1 trials of 1 task(s)",
        "qc: mean score 0.750 over 2 trials of 1 task(s)",
    ]
    assert [r[2] for r in rows if len(r) > 1] == ["t_a", "t_b", "t_x", "t_c"]
    assert table_rows(page, "heat-categories") == [["p × m", "0.62 n=4", "0.25 n=1", "0.75 n=2"]]


def test_runs_over_different_task_sets_are_warned_about(
    tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    def run(run_id: str, *tasks: str) -> RunStore:
        return make_run(tmp_path, cells, run_id=run_id, scores={("p", "m", t): [0.5] for t in tasks})

    a, b = run("run-a", "t_cluster", "t_qc"), run("run-b", "t_cluster", "t_x")
    c = run("run-c", "t_qc", "t_cluster")
    page = build_report([a, b], tmp_path / "r.html").read_text()
    warning = page.split('id="task-sets"')[1].split("</div>")[0]
    assert "run-a lacks t_x; run-b lacks t_qc" in warning
    assert 'id="task-sets"' not in build_report([a, c], tmp_path / "same.html").read_text()
    within = make_run(tmp_path, cells, run_id="run-d", scores={
        ("p", "m", "t_cluster"): [1.0], ("p", "m", "t_qc"): [1.0], ("q", "m", "t_cluster"): [0.0]})
    alone = build_report([within], tmp_path / "within.html").read_text()
    assert "q × m did not run t_qc: its mean is over fewer tasks." in alone


def test_every_trial_has_an_anchor_linked_from_the_per_task_table(run: RunStore, tmp_path: Path) -> None:
    page = build_report([run], tmp_path / "r.html").read_text()
    ids = {t.trial_id for t in run.trials()}
    anchors = set(re.findall(r'<tr class="trial-row" id="([^"]+)"', page))
    assert anchors == {trial_anchor(i) for i in ids}
    per_task = page.split('id="per-task"')[1].split("</table>")[0]
    assert set(re.findall(r'href="#([^"]+)"', per_task)) == anchors


def test_html_outputs_are_sanitised_not_shown_as_text(
    tmp_path: Path, cells: dict[str, ExecutionRecord]
) -> None:
    store = make_run(tmp_path, cells, scores={("p", "m", "t"): [1.0]}, judge=False)
    record = store.trials()[0]
    record.turns[0].executions += [cells["frame"], cells["hostile"]]
    store.append_trial(record)
    page = build_report([store], tmp_path / "r.html").read_text()
    outputs = [o for t in trial_blocks(page)[0]["turns"] for x in t["execs"] for o in x["outputs"]]
    frame, hostile = [o["html"] for o in outputs if o["k"] == "html"]
    assert "<table" in frame and "<td>340</td>" in frame and "<style" not in frame
    assert "<b>summary</b>" in hostile and "<td>safe cell</td>" in hostile and "click me" in hostile
    for bad in ("<script", "__xss = 'script'", "onerror", "<iframe", "javascript:", "<svg", "<link", "http:",
                "style=", "onclick", "<form", "<input", "href", "id="):
        assert bad not in hostile, bad
    assert "IPython.core.display.HTML object" not in page


def _with_costs(store: RunStore, cost: float, unknown: bool = False) -> RunStore:
    for record in store.trials():
        record.usage.cost_usd, record.usage.cost_unknown = cost, unknown
        store.append_trial(record)
    return store


def test_degenerate_plots_are_left_out_with_a_note(tmp_path: Path, cells: dict[str, ExecutionRecord]) -> None:
    def plots_of(store: RunStore) -> tuple[int, list[str]]:
        page = build_report([store], store.path / "r.html").read_text()
        notes = re.findall(r"<p class='plot-note'>(.*?)</p>", page)
        return page.count('<img class="plot"'), notes

    free = _with_costs(make_run(tmp_path, cells, run_id="free", judge=False), 0.0)
    assert plots_of(free) == (2, ["Cost vs score left out: no trial has a known non-zero cost "
                                  "(unpriced or cached models)."])
    unpriced = _with_costs(make_run(tmp_path, cells, run_id="unpriced", judge=False), 0.0, unknown=True)
    assert plots_of(unpriced)[1][0].startswith("Cost vs score left out: no trial has a known")
    assert "<td>unknown</td>" in (unpriced.path / "r.html").read_text()  # never shown as $0.0000
    one = make_run(tmp_path, cells, run_id="one", judge=False, scores={("p", "m", "t_qc"): [1.0]})
    assert plots_of(one) == (0, [
        "Score distribution left out: only 1 trial(s): nothing to compare.",
        "Cost vs score left out: only 1 trial(s): nothing to compare.",
        "Pass rate per task category left out: every task is in one category (qc): its pass rate is "
        "the leaderboard&#x27;s.",
    ])
    equal = make_run(tmp_path, cells, run_id="equal", judge=False,
                     scores={("p", "m", "t_qc"): [0.5, 0.5], ("p", "m", "t_cluster"): [0.5]})
    count, notes = plots_of(equal)
    assert count == 1 and notes[:2] == ["Score distribution left out: every trial scored 0.500.",
                                        "Cost vs score left out: every trial scored 0.500."]
