"""Run overhead: how much of a trial is cellprompt's own bookkeeping, and what --parallel 2 buys.

Runs the built-in suite with the `reference` model twice in one process — serial,
then `--parallel 2` — and prints:
  * overhead share = (trial wall time − model time − kernel execution time) / trial wall time
    over the serial run, with and without grading (python_check graders start a sandbox of
    their own); target <= 5%; sandboxes come warm from the pool;
  * throughput ratio = serial wall time / parallel wall time (target >= 1.5 on 2 cores).

Usage: .venv/bin/python benchmarks/run_overhead.py [--backend bwrap] [--replicates 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cellprompt.prompts import builtin_prompt
from cellprompt.runs.runner import create_run, plan_trials, run
from cellprompt.tasks import builtin_tasks, materialise


def timed_run(outputs: Path, backend: str, replicates: int, parallel: int) -> tuple[float, list]:
    specs = plan_trials(prompts={"baseline": builtin_prompt()}, tasks=[t.id for t in builtin_tasks()],
                        models=["reference"], replicates=replicates, sandbox_backend=backend)
    store = create_run(outputs / f"j{parallel}", specs)
    t0 = time.perf_counter()
    progress = run(specs, store, parallel=parallel)
    return time.perf_counter() - t0, progress.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--replicates", type=int, default=1)
    args = parser.parse_args()
    for task in builtin_tasks():  # agent copies are made once per task; not part of a trial's cost
        materialise(task)
    with tempfile.TemporaryDirectory() as tmp:
        serial_s, records = timed_run(Path(tmp), args.backend, args.replicates, parallel=1)
        parallel_s, _ = timed_run(Path(tmp), args.backend, args.replicates, parallel=2)
    wall = sum(r.wall_s for r in records)
    model = sum(r.model_s for r in records)
    execution = sum(r.exec_s for r in records)
    grading = sum(r.grade_s for r in records)
    rest = wall - model - execution - grading
    print(f"trials: {len(records)} per run, backend {args.backend}")
    print(f"trial wall {wall:.2f} s = model {model:.2f} s + agent kernel execution {execution:.2f} s "
          f"+ grading {grading:.2f} s + cellprompt overhead {rest:.2f} s")
    print(f"outside model calls and kernel execution: {(wall - model - execution) / wall:.1%} "
          f"(grading included), {rest / wall:.1%} (grading excluded); target <= 5%")
    print(f"serial {serial_s:.1f} s, parallel 2 {parallel_s:.1f} s, "
          f"throughput ratio {serial_s / parallel_s:.2f} (target >= 1.5)")


if __name__ == "__main__":
    main()
