"""The Ray executor on a real local cluster: staging, a killed worker, a killed driver, two nodes,
preflight.

Lean on purpose (CI has two cores): a handful of reference trials in real bwrap sandboxes.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cellprompt.errors import RunError, UsageError
from cellprompt.runs.ray_executor import TASK_NAME_PREFIX, RayExecutor
from cellprompt.runs.runner import create_run, plan_trials, run
from cellprompt.runs.staging import StagedFile, ensure_staged
from cellprompt.runs.store import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster", "one_cpu_trials")]

TASKS = ["pbmc68k-qc-mito", "pbmc68k-pca-variance"]


def _fetch(ref):  # on the worker: bytes from the object store
    import ray

    return ray.get(ref)


def test_staging_places_missing_files_once_per_node(tmp_path: Path) -> None:
    import ray

    source = tmp_path / "copy" / "truth.json"
    source.parent.mkdir()
    source.write_text('{"n": 1}')
    source.chmod(0o600)
    os.utime(source, ns=(1_700_000_000_000_000_000,) * 2)
    st = source.stat()
    staged = StagedFile(str(source), st.st_size, st.st_mtime_ns, 0o600, ray.put(source.read_bytes()))
    source.unlink()  # as on a node that never saw the driver's datasets folder
    place = ray.remote(ensure_staged).options(num_cpus=0)
    assert ray.get(place.remote([staged], _fetch), timeout=300) == 1
    assert source.read_text() == '{"n": 1}'
    assert (source.stat().st_mtime_ns, source.stat().st_mode & 0o777) == (st.st_mtime_ns, 0o600)
    assert ray.get(place.remote([staged], _fetch), timeout=300) == 0, "already in place: no copy"


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _process_titles() -> dict[int, str]:
    """Every process's title (Ray names its workers `ray::<task or actor>`)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found[int(proc.name)] = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(
                    errors="replace")
            except OSError:
                continue
    return found


def _trial_workers() -> dict[int, str]:
    """Ray worker processes busy with a trial → the trial id (Ray titles them `ray::<task name>`)."""
    prefix = "ray::" + TASK_NAME_PREFIX
    return {pid: title.removeprefix(prefix) for pid, title in _process_titles().items()
            if title.startswith(prefix)}


def _kill_a_worker_mid_trial(timeout: float = 300) -> tuple[str, datetime]:
    """SIGKILL the first worker seen running a trial inside its sandbox; (trial id, when)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, trial in _trial_workers().items():
            if _descendants(pid):  # its sandbox is up: the trial is under way
                os.kill(pid, signal.SIGKILL)
                return trial, datetime.now(timezone.utc)
        time.sleep(0.2)
    raise AssertionError("no worker was seen running a trial")


def _run_in_thread(specs, store: RunStore, executor: RayExecutor) -> threading.Thread:
    thread = threading.Thread(target=run, args=(specs, store), kwargs={"executor": executor}, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_trial_has_its_trial_run_again(run_env: Path) -> None:
    specs = plan_trials(prompts={"p": "be careful"}, tasks=TASKS, models=["reference"],
                        sandbox_backend="bwrap")
    store = create_run(run_env, specs)
    thread = _run_in_thread(specs, store, RayExecutor(max_retries=1))
    killed, at = _kill_a_worker_mid_trial()
    thread.join(timeout=900)
    assert not thread.is_alive()
    lines = store.trials_path.read_text().splitlines()
    assert sorted(json.loads(line)["trial_id"] for line in lines) == sorted(s.trial_id for s in specs)
    record = next(r for r in store.trials() if r.trial_id == killed)
    assert record.status == "submitted" and record.passed, record.error
    assert record.started_at > at, "the killed trial's record must come from its re-run"
    assert store.manifest().status == "finished"


def _slot_processes() -> list[int]:
    """Trial slots still alive (idle or in a trial) and every process under them (sandboxes)."""
    slots = list(_trial_workers())
    slots += [pid for pid, title in _process_titles().items() if title.startswith("ray::TrialSlot")]
    return slots + [kid for pid in slots for kid in _descendants(pid)]


def test_stopping_a_run_leaves_no_slot_or_sandbox_behind(run_env: Path) -> None:
    """As on Ctrl-C: `stop` set, the records closed; running trials end, slots and their
    prelaunched sandboxes go, and closing returns without waiting for the rest of the plan."""
    specs = plan_trials(prompts={"p": "be careful"}, tasks=TASKS, models=["reference"], replicates=2,
                        sandbox_backend="bwrap")
    stop = threading.Event()
    records = RayExecutor().run_trials(specs, run_env, stop)
    next(records)
    assert _slot_processes(), "the slots were running"
    stop.set()
    records.close()
    deadline = time.monotonic() + 30
    while (left := _slot_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"


def _slot_pids() -> set[int]:
    return {pid for pid, title in _process_titles().items() if title.startswith("ray::TrialSlot")}


def test_slots_serve_the_executors_next_run_and_end_with_it(run_env: Path) -> None:
    """An evolution runs once per candidate: a slot is a Python worker that takes seconds to
    start, so slots outlive a run that ended and serve the next; they end with the executor."""
    executor = RayExecutor()
    pids = []
    for prompt in ("be careful", "be brief"):
        specs = plan_trials(prompts={"p": prompt}, tasks=TASKS[:1], models=["reference"],
                            sandbox_backend="bwrap")
        store = create_run(run_env / prompt.replace(" ", "-"), specs)
        run(specs, store, executor=executor)
        assert [r.passed for r in store.trials()] == [True]
        pids.append(_slot_pids())
    assert pids[0] and pids[0] == pids[1], "the second run started slots of its own"
    del executor
    gc.collect()
    deadline = time.monotonic() + 30
    while (left := _slot_pids()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"slots outlived their executor: {left}"


def test_retries_are_bounded(run_env: Path) -> None:
    specs = plan_trials(prompts={"p": "be careful"}, tasks=TASKS[:1], models=["reference"],
                        sandbox_backend="bwrap")
    store = create_run(run_env, specs)
    thread = _run_in_thread(specs, store, RayExecutor(max_retries=0))
    _kill_a_worker_mid_trial()
    thread.join(timeout=600)
    [record] = store.trials()
    assert record.status == "error"
    assert "worker running this trial died on each of its 1 attempt(s)" in (record.error or "")


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cellprompt.cli.main", *args], env={**os.environ},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_resume_after_the_driver_is_killed(run_env: Path, ray_cluster: str) -> None:
    ray_args = ["--executor", "ray", "--ray-address", ray_cluster]
    first = _cli(["run", "--prompt", "be careful", "--model", "reference", "-n", "2", "--sandbox", "bwrap",
                  "--out", str(run_env), *ray_args, *[a for t in TASKS for a in ("--task", t)]])
    deadline = time.monotonic() + 600
    trials = None
    while trials is None or not _lines(trials):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no trial finished in time"
        runs = [p for p in run_env.iterdir() if p.is_dir()] if run_env.exists() else []
        trials = runs[0] / "trials.jsonl" if runs else None
        time.sleep(0.2)
    first.kill()  # SIGKILL: no clean-up of any kind
    first.wait(timeout=60)
    kept = len(_lines(trials))
    assert 1 <= kept < 4
    manifest = json.loads((trials.parent / "run.json").read_text())
    assert manifest["config"]["executor"] == {"name": "ray", "ray_address": ray_cluster}
    second = _cli(["run", "--resume", str(trials.parent)])  # the run's own executor and cluster
    _, err = second.communicate(timeout=900)
    assert second.returncode == 0, err
    records = [json.loads(line) for line in _lines(trials)]
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) == 4, "every trial exactly once"
    assert all(r["node"] for r in records), "the resumed trials ran on the Ray cluster too"
    assert json.loads((trials.parent / "run.json").read_text())["status"] == "finished"


def test_trials_land_on_both_nodes(run_env: Path, second_node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second node on this machine: one trial fits a node, so the two trials run one on each."""
    import ray

    from cellprompt.config import reset_settings

    monkeypatch.setenv("CELLPROMPT_SANDBOX_CPUS", "2")
    reset_settings()
    specs = plan_trials(prompts={"p": "be careful"}, tasks=TASKS, models=["reference"],
                        sandbox_backend="bwrap")
    store = create_run(run_env, specs)
    run(specs, store, executor=RayExecutor())
    records = store.trials()
    assert all(r.status == "submitted" and r.passed for r in records), [r.error for r in records]
    head = ray.get_runtime_context().get_node_id()
    assert sorted(r.node or "" for r in records) == sorted([head, second_node])


def test_a_trial_too_big_for_every_node_is_refused(run_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellprompt.config import reset_settings

    monkeypatch.setenv("CELLPROMPT_SANDBOX_CPUS", "64")
    reset_settings()
    specs = plan_trials(prompts={"p": "x"}, tasks=TASKS[:1], models=["reference"], sandbox_backend="bwrap")
    with pytest.raises(UsageError, match="no Ray node has the 64 CPU"):
        list(RayExecutor().run_trials(specs, run_env, threading.Event()))


def test_a_node_whose_sandbox_backend_fails_preflight_is_refused(run_env: Path) -> None:
    """Preflight asks every node for the backend the trials need; one that has none stops the run."""
    specs = plan_trials(prompts={"p": "x"}, tasks=TASKS[:1], models=["reference"], sandbox_backend="bwrap")
    for spec in specs:
        spec.sandbox_backend = "nosuch"
    with pytest.raises(RunError, match=r"Ray node .* cannot run trials: no working sandbox backend"):
        list(RayExecutor().run_trials(specs, run_env, threading.Event()))
