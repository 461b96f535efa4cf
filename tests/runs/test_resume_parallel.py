"""Runs survive Ctrl-C and SIGKILL, resume to exactly one record per trial, and parallel = serial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cellprompt.runs.runner import create_run, plan_trials, run
from cellprompt.runs.store import RunStore

TASKS = ["pbmc68k-qc-mito", "pbmc68k-pca-variance"]


def _outcome(store: RunStore) -> dict[str, tuple]:
    return {t.trial_id: (t.status, t.score, t.passed, json.dumps(t.answer, sort_keys=True))
            for t in store.trials()}


def test_parallel_gives_the_same_results_as_serial(run_env: Path) -> None:
    results = []
    for parallel in (1, 2):
        specs = plan_trials(prompts={"p": "be careful"}, tasks=TASKS, models=["reference"], replicates=2,
                            sandbox_backend="bwrap")
        store = create_run(run_env / f"j{parallel}", specs)
        progress = run(specs, store, parallel=parallel)
        assert progress.done == 4
        results.append(_outcome(store))
    assert results[0] == results[1]
    assert all(status == "submitted" and passed for status, _, passed, _ in results[0].values())


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cellprompt.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_trials(trials: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(_lines(trials)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)


def _bwrap_children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                status = (proc / "status").read_text()
            except OSError:
                continue
            ppid = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("PPid:"))
            if cmd and cmd[0].endswith(b"bwrap") and ppid == pid:
                found.append(int(proc.name))
    return found


def test_interrupt_and_kill_then_resume(run_env: Path) -> None:
    env = {**os.environ}
    args = ["run", "--prompt", "be careful", "--model", "reference", "-n", "3", "--sandbox", "bwrap",
            "--out", str(run_env), *[a for t in TASKS for a in ("--task", t)]]
    first = _start(args, env)
    runs = lambda: [p for p in run_env.iterdir() if p.is_dir()] if run_env.exists() else []  # noqa: E731
    deadline = time.monotonic() + 60
    while not runs():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    [run_dir] = runs()
    trials = run_dir / "trials.jsonl"
    _wait_for_trials(trials, 1, first)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "resume with: cellprompt run --resume" in err and "Traceback" not in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert _bwrap_children(first.pid) == []
    kept = len(_lines(trials))
    assert 1 <= kept < 6

    second = _start(["run", "--resume", str(run_dir)], env)
    _wait_for_trials(trials, kept + 1, second)
    second.kill()
    second.wait(timeout=30)
    kept = len(_lines(trials))

    third = _start(["run", "--resume", str(run_dir)], env)
    _, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    ids = [json.loads(line)["trial_id"] for line in _lines(trials) if line.endswith("}")]
    assert len(ids) == len(set(ids)) == 6, "every trial exactly once"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
