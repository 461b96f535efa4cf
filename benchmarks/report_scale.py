"""How the HTML report scales: file size, build time, and chromium load/open times, 50 vs 500 trials.

Each synthetic trial has three turns, four code cells (streams, a coloured traceback,
a real matplotlib PNG, an execute_result) and a judge verdict, like a typical agent run.
Run: .venv/bin/python benchmarks/report_scale.py [--trials 500]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure

from cellprompt.export.report import build_report
from cellprompt.grading.base import GradeResult
from cellprompt.llm.base import Usage
from cellprompt.records.run import (
    Evaluation,
    ExecutionRecord,
    JudgeCriterion,
    JudgeSample,
    RunManifest,
    TrialRecord,
    TrialSpec,
    Turn,
)
from cellprompt.runs.store import RunStore

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _png(seed: int) -> bytes:
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.scatter([(i * 37 + seed) % 101 for i in range(300)], [(i * 53 + seed) % 97 for i in range(300)], s=4)
    ax.set_title(f"UMAP {seed}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return buf.getvalue()


def make_store(root: Path, n: int) -> RunStore:
    store = RunStore.create(root, RunManifest(run_id=f"scale-{n}", status="finished"))
    for i in range(n):
        tid = f"trial-{i:04d}"
        folder = store.artifacts_dir(tid)
        folder.mkdir(parents=True)
        (folder / "fig-1.png").write_bytes(_png(i % 20))
        rel = f"artifacts/{tid}/fig-1.png"
        tb = ["\x1b[31m---------\x1b[39m", "\x1b[31mKeyError\x1b[39m: 'leiden'"] * 5
        execs = [
            ExecutionRecord(
                code="import scanpy as sc\nadata = sc.read_h5ad('/data/pbmc.h5ad')\nprint(adata)",
                final_status="ok",
                execution_count=1,
                outputs=[{"type": "stream", "name": "stdout", "text": "AnnData object 2700 × 32738\n" * 20}],
            ),
            ExecutionRecord(
                code="adata.obs['leiden']",
                final_status="error",
                execution_count=2,
                outputs=[{"type": "error", "ename": "KeyError", "evalue": "'leiden'", "traceback": tb}],
            ),
            ExecutionRecord(
                code="sc.pl.umap(adata, color='leiden')",
                final_status="ok",
                execution_count=3,
                outputs=[
                    {
                        "type": "display_data",
                        "data": {"image/png": rel, "text/plain": "<Figure>"},
                        "metadata": {},
                    }
                ],
                images=[rel],
            ),
            ExecutionRecord(
                code="adata.obs['leiden'].nunique()",
                final_status="ok",
                execution_count=4,
                outputs=[{"type": "execute_result", "data": {"text/plain": "8"}, "metadata": {}}],
            ),
        ]
        spec = TrialSpec(
            trial_id=tid,
            prompt_id=f"prompt{i % 4}",
            prompt="You are a careful analyst. " * 20,
            task_id=f"task{i % 10}",
            task_ref=f"task{i % 10}",
            model=f"openai:m{i % 2}",
            replicate=i,
        )
        score = ((i * 7) % 11) / 10
        record = TrialRecord(
            trial_id=tid,
            spec=spec,
            status="submitted",
            first_message="Cluster the cells. " * 30,
            turns=[
                Turn(index=0, assistant_text="I will load and cluster the data. " * 10, executions=execs[:2]),
                Turn(index=1, assistant_text="Now plot it.", executions=execs[2:]),
                Turn(index=2, assistant_text="There are 8 clusters."),
            ],
            answer={"n_clusters": 8},
            score=score,
            passed=score >= 0.5,
            grades=[GradeResult(grader="numeric", score=score, passed=score >= 0.5, reasoning="ok")],
            usage=Usage(input_tokens=5000, output_tokens=600, cost_usd=0.01),
            wall_s=40.0,
        )
        store.append_trial(record)
        store.append_evaluation(
            Evaluation(
                trial_id=tid,
                judge_model="openai:judge",
                ok=True,
                grade_mean=70.0,
                grade_sd=0.0,
                samples=[
                    JudgeSample(
                        grade=70.0,
                        comments="Reasonable. " * 20,
                        criteria=[
                            JudgeCriterion(name=c, score=7, comment="fine")
                            for c in ("correctness", "efficiency", "clarity")
                        ],
                    )
                ],
            )
        )
    return store


def measure(n: int, root: Path, page) -> dict[str, float]:
    store = make_store(root, n)
    t0 = time.perf_counter()
    report = build_report([store], root / f"report-{n}.html")
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.goto(report.as_uri(), wait_until="load")
    load_s = time.perf_counter() - t0
    nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
    import json

    timing = json.loads(nav)
    t0 = time.perf_counter()
    page.locator("#trials tr.trial-row").nth(n - 1).click()
    page.locator(".trial-body img.figure").first.wait_for()
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.fill("#filter", "prompt3")
    page.locator("#trials tr.trial-row:visible").first.wait_for()
    filter_s = time.perf_counter() - t0
    return {
        "trials": n,
        "size_mb": report.stat().st_size / 1e6,
        "build_s": build_s,
        "load_s": load_s,
        "dom_content_loaded_ms": timing["domContentLoadedEventEnd"],
        "load_event_ms": timing["loadEventEnd"],
        "open_trial_s": open_s,
        "filter_s": filter_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=500)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        small = measure(max(args.trials // 10, 1), Path(tmp) / "small", page)
        big = measure(args.trials, Path(tmp) / "big", page)
        browser.close()
    for row in (small, big):
        print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(
        f"ratios {big['trials']}/{small['trials']} trials: size x{big['size_mb'] / small['size_mb']:.1f}, "
        f"load x{big['load_s'] / small['load_s']:.1f}, "
        f"open-one-trial x{big['open_trial_s'] / small['open_trial_s']:.1f}"
    )


if __name__ == "__main__":
    main()
