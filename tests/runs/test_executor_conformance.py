"""The executor conformance suite: every executor (local threads, Ray) behaves the same to the runner.

The protocol (`runs/executors.py`): each spec's record exactly once, yielded as each
trial ends; the trial function's own exceptions reach the consumer; a set `stop`
starts nothing new; a consumer that stops reading leaves no trial running. The
same plan gives the same records through `run()` with real sandboxes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cellprompt.records.run import TrialRecord, TrialSpec
from cellprompt.runs.executors import Executor, LocalExecutor, make_executor
from cellprompt.runs.runner import create_run, plan_trials, run

EXECUTORS = ["local", "ray"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Callable[[int], Executor]:
    """A factory: executor of the parametrised kind with `parallel` trials at once."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")  # joined: no address needed in-process
        request.getfixturevalue("one_cpu_trials")
    return lambda parallel: make_executor(request.param, parallel=parallel)


def _specs(n: int) -> list[TrialSpec]:
    return [TrialSpec(trial_id=f"t{i}", prompt_id="p", prompt="p", task_id="x", task_ref="x",
                      model="reference", replicate=i) for i in range(n)]


class Sleepy:
    """A picklable trial function: sleeps `delays[replicate]`, leaves a marker, may raise."""

    def __init__(self, markers: Path, delays: dict[int, float], fail: int | None = None) -> None:
        self.markers, self.delays, self.fail = str(markers), delays, fail

    def __call__(self, spec: TrialSpec) -> TrialRecord:
        Path(self.markers, spec.trial_id).write_text("started")
        time.sleep(self.delays.get(spec.replicate, 0.0))
        if spec.replicate == self.fail:
            raise ValueError(f"trial {spec.trial_id} broke")
        return TrialRecord(trial_id=spec.trial_id, spec=spec, status="submitted")


def test_each_record_once_yielded_as_it_ends(executor, tmp_path: Path) -> None:
    fn = Sleepy(tmp_path, {0: 6.0})
    records = list(executor(2).run(fn, _specs(4), threading.Event()))
    ids = [r.trial_id for r in records]
    assert sorted(ids) == ["t0", "t1", "t2", "t3"]
    assert ids[-1] == "t0", "the slow trial must not hold back the others"


def test_trial_exceptions_reach_the_consumer(executor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="t1 broke"):
        list(executor(1).run(Sleepy(tmp_path, {}, fail=1), _specs(3), threading.Event()))


def test_a_set_stop_starts_nothing(executor, tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert list(executor(2).run(Sleepy(tmp_path, {}), _specs(3), stop)) == []
    assert list(tmp_path.iterdir()) == []


def test_a_consumer_that_stops_reading_leaves_nothing_running(executor, tmp_path: Path) -> None:
    stop = threading.Event()
    records = executor(1).run(Sleepy(tmp_path, {0: 0.0, 1: 8.0}), _specs(5), stop)
    first = next(records)
    assert first.trial_id == "t0"
    stop.set()  # as the runner does on Ctrl-C, before closing
    records.close()
    time.sleep(3)
    started = {p.name for p in tmp_path.iterdir()}
    assert started <= {"t0", "t1"}, f"trials started after the consumer stopped: {started}"


def _outcome(records: list[TrialRecord]) -> dict[str, tuple]:
    return {r.trial_id: (r.status, r.score, r.passed, r.error, json.dumps(r.answer, sort_keys=True),
                         len(r.turns), [len(t.executions) for t in r.turns]) for r in records}


@pytest.mark.slow
def test_the_runner_gives_the_same_records(executor, run_env: Path) -> None:
    """Real sandboxes and the offline reference model: what each executor's run stores."""
    specs = plan_trials(prompts={"p": "be careful"}, tasks=["pbmc68k-qc-mito", "pbmc68k-pca-variance"],
                        models=["reference"], sandbox_backend="bwrap")
    store = create_run(run_env, specs)
    chosen = executor(2)
    progress = run(specs, store, executor=chosen)
    assert progress.done == 2
    stored = store.trials()
    assert all(r.status == "submitted" and r.passed for r in stored), [r.error for r in stored]
    lines = store.trials_path.read_text().splitlines()
    assert len(lines) == 2 and store.manifest().status == "finished"
    for record in stored:  # the workspace the agent left came back into this run folder
        assert (store.artifacts_dir(record.trial_id) / "workspace").is_dir()
    if isinstance(chosen, LocalExecutor):
        return
    baseline = run_env / "baseline"  # the local executor is the reference behaviour
    local = create_run(baseline, specs)
    run(specs, local, executor=make_executor("local", parallel=2))
    assert _outcome(stored) == _outcome(local.trials())
    assert _files(store.path / "artifacts") == _files(local.path / "artifacts")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
