"""Ray executor overhead: per-trial cost of running the reference suite on Ray vs in local threads.

Runs the same plan (built-in suite, `reference` model) with the local executor and with
the Ray executor on a local cluster, both with `--parallel P`, in one process, in
alternating rounds (a shared machine's load drifts; alternation spreads it over both), and
prints:
  * mean trial time (a record's own wall time: sandbox, agent, grading);
  * per-trial executor overhead = (Ray run wall − local run wall) × P / trials, as a share
    of the mean trial time (target <= 5%), split into the part inside a trial's own time (a
    sandbox start not hidden: both executors launch each slot's next sandbox while its current
    trial runs, so this is noise or a slot's first trial) and the part outside it (starting the
    trial slots, dispatch, staging check, artifacts back); the cluster's start-up is printed
    apart (once per process);
  * Ray's bare round trip for an empty task (dispatch + result), the floor of that overhead;
  * staging: what the driver puts in the object store once per run.
The figures feed the README's throughput-vs-nodes estimate.

Usage: .venv/bin/python benchmarks/ray_overhead.py [--backend bwrap] [--tasks N] [--parallel 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from cellprompt.prompts import builtin_prompt
from cellprompt.runs.executors import Executor, make_executor
from cellprompt.runs.runner import create_run, plan_trials, run
from cellprompt.runs.staging import task_files
from cellprompt.tasks import builtin_tasks, materialise


def timed_run(outputs: Path, executor: Executor, task_ids: list[str], backend: str,
              parallel: int) -> tuple[float, list]:
    specs = plan_trials(prompts={"baseline": builtin_prompt()}, tasks=task_ids, models=["reference"],
                        sandbox_backend=backend)
    store = create_run(outputs, specs)
    t0 = time.perf_counter()
    progress = run(specs, store, parallel=parallel, executor=executor)
    return time.perf_counter() - t0, progress.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--tasks", type=int, default=0, help="first N tasks of the suite (0: all)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="split the tasks into N rounds, each run on both executors in turn")
    args = parser.parse_args()
    os.environ.setdefault("CELLPROMPT_SANDBOX_CPUS", str(max(1, (os.cpu_count() or 2) // args.parallel)))
    tasks = [t for t in builtin_tasks() if t.reference is not None]
    tasks = tasks[: args.tasks] if args.tasks else tasks
    for task in tasks:  # agent copies are made once per task; not part of a trial's cost
        materialise(task)
    ids = [t.id for t in tasks]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    startup = time.perf_counter() - t0
    noop = ray.remote(lambda: None).options(num_cpus=0)
    ray.get(noop.remote())  # a warm worker
    trips = []
    for _ in range(20):
        t = time.perf_counter()
        ray.get(noop.remote())
        trips.append(time.perf_counter() - t)
    # one executor each for every round, as `evolve` keeps one: Ray's node preflight runs once
    executors = {name: make_executor(name, parallel=args.parallel) for name in ("local", "ray")}
    walls = {"local": 0.0, "ray": 0.0}
    records: dict[str, list] = {"local": [], "ray": []}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):  # alternate, so a machine whose load drifts weighs on both alike
            chunk = ids[i::args.rounds]
            for name in (("local", "ray") if i % 2 == 0 else ("ray", "local")):
                loads.append(os.getloadavg()[0])
                wall, done = timed_run(Path(tmp) / f"{name}-{i}", executors[name], chunk, args.backend,
                                       args.parallel)
                walls[name] += wall
                records[name] += done
                loads.append(os.getloadavg()[0])
    (local_s, local_records), (ray_s, ray_records) = ((walls[k], records[k]) for k in ("local", "ray"))
    n = len(ids)
    trial = statistics.mean(r.wall_s for r in local_records)
    ray_trial = statistics.mean(r.wall_s for r in ray_records)
    overhead = (ray_s - local_s) * args.parallel / n
    staged = sum(p.stat().st_size for p in {f for t in tasks for f in task_files(t.id)})
    print(f"trials: {n} per executor in {args.rounds} round(s), backend {args.backend}, "
          f"--parallel {args.parallel}, {os.cpu_count()} CPUs, load average {min(loads):.1f} to "
          f"{max(loads):.1f} (at each run's start and end)")
    print(f"mean trial time: local {trial:.2f} s, on Ray {ray_trial:.2f} s; passed: local "
          f"{sum(r.passed for r in local_records)}/{n}, Ray {sum(r.passed for r in ray_records)}/{n}")
    print(f"run wall: local {local_s:.1f} s, Ray {ray_s:.1f} s; Ray cluster start-up {startup:.1f} s (once)")
    print(f"per-trial executor overhead {overhead:+.2f} s = {overhead / trial:+.1%} of a trial "
          "(target <= 5%)")
    inside = ray_trial - trial  # sandbox starts the slots' prelaunch did not hide
    print(f"  of which inside the trial {inside:+.2f} s (sandbox start not hidden by prelaunch), "
          f"outside it {overhead - inside:+.2f} s = {(overhead - inside) / trial:+.1%} "
          "(slots starting, dispatch, staging check, artifacts back)")
    print(f"Ray round trip of an empty task: median {statistics.median(trips) * 1000:.1f} ms")
    print(f"staged once per node: {staged / 2**20:.1f} MiB for {n} task(s)")
    ray.shutdown()


if __name__ == "__main__":
    main()
