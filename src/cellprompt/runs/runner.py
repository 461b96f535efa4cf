"""Runs a set of trial specs into a run folder: resumable, interruptible, in parallel."""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cellprompt.errors import CellpromptError, RunError
from cellprompt.records.run import RunManifest, TrialRecord, TrialSpec
from cellprompt.runs.executors import Executor, LocalExecutor, RemoteExecutor
from cellprompt.runs.plan import plan_trials, spec_task
from cellprompt.runs.store import RunStore, new_run_id
from cellprompt.runs.trial import SandboxProvider, execute_trial, open_fresh
from cellprompt.sandbox import SandboxPool
from cellprompt.sandbox.base import Mount, Sandbox
from cellprompt.version import __version__

log = logging.getLogger(__name__)

__all__ = ["RunProgress", "create_run", "plan_trials", "run", "versions"]


@dataclass
class RunProgress:
    """Running totals the CLI shows in its progress bar."""

    total: int
    done: int = 0
    passed: int = 0
    cost_usd: float = 0.0
    skipped: int = 0  # already in the store (resume)
    records: list[TrialRecord] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        finished = self.done - self.skipped
        return self.passed / finished if finished else 0.0


def versions() -> dict[str, str]:
    """Versions recorded in the manifest so results can be traced to the software that made them."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"cellprompt": __version__, "python": sys.version.split()[0]}
    for pkg in ("anndata", "scanpy", "numpy", "openai", "anthropic", "jupyter_client"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return found


def create_run(outputs_dir: Path, specs: list[TrialSpec], *, command: str = "",
               config: dict | None = None, run_id: str | None = None) -> RunStore:
    backends = sorted({s.sandbox_backend for s in specs})
    manifest = RunManifest(run_id=run_id or new_run_id(), command=command, config=config or {},
                           versions=versions(), sandbox={"backend": ", ".join(backends)},
                           total_trials=len(specs))
    store = RunStore.create(outputs_dir, manifest)
    store.write_json("specs.json", [s.model_dump(mode="json") for s in specs])
    return store


def load_specs(store: RunStore) -> list[TrialSpec]:
    """The planned matrix of a run, for `--resume`."""
    path = store.path / "specs.json"
    if not path.exists():
        raise RunError(f"{store.path} has no specs.json: it cannot be resumed")
    return [TrialSpec.model_validate(s) for s in json.loads(path.read_text(encoding="utf-8"))]


class _Tracked:
    """Wraps a provider to know the live sandboxes, so an interrupt can close them at once."""

    def __init__(self, provider: SandboxProvider) -> None:
        self.provider = provider
        self.live: set[Sandbox] = set()
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self, backend: str, mounts: list[Mount]) -> Iterator[Sandbox]:
        with self.provider(backend, mounts) as sandbox:
            with self.lock:
                self.live.add(sandbox)
            try:
                yield sandbox
            finally:
                with self.lock:
                    self.live.discard(sandbox)

    def close_all(self) -> None:
        with self.lock:
            live = list(self.live)
        for sandbox in live:
            try:
                sandbox.close()
            except Exception:  # an interrupt is under way: close the others regardless
                log.debug("closing sandbox %s failed", sandbox.id, exc_info=True)


def sandbox_plan(specs: list[TrialSpec]) -> list[dict[str, object]]:
    """The sandboxes the trials will ask for, in order; a task that cannot load is left out
    (its trial records the error itself)."""
    from cellprompt.tasks import materialise

    mounts: dict[str, tuple[Mount, ...] | None] = {}
    plan: list[dict[str, object]] = []
    for spec in specs:
        if spec.task_ref not in mounts:
            try:
                mounts[spec.task_ref] = (materialise(spec_task(spec)).mount(),)
            except CellpromptError:
                mounts[spec.task_ref] = None
        if (found := mounts[spec.task_ref]) is not None:
            plan.append({"backend": spec.sandbox_backend, "datasets": list(found)})
    return plan


def _safe_trial(spec: TrialSpec, run_dir: Path, provider: SandboxProvider,
                stop: threading.Event) -> TrialRecord:
    """A bug in one trial becomes that trial's `error` record; the run goes on."""
    try:
        return execute_trial(spec, run_dir, provider=provider, should_stop=stop.is_set)
    except Exception as exc:  # recorded as the trial's error, not swallowed
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return TrialRecord(trial_id=spec.trial_id, spec=spec, status="error",
                           error=f"internal error: {type(exc).__name__}: {exc}\n{tail}")


def run(specs: list[TrialSpec], store: RunStore, *, parallel: int = 1,
        executor: Executor | None = None, provider: SandboxProvider | None = None,
        on_trial: Callable[[TrialRecord, RunProgress], None] | None = None,
        rerun_errors: bool = False) -> RunProgress:
    """Run every spec not yet in the store; each record is appended as soon as it ends.

    `rerun_errors`: a stored trial that errored (sandbox, provider) runs again and its new
    record replaces the old one (evolution retries outages instead of scoring them).

    KeyboardInterrupt: no new trials start, running ones are told to stop and are
    not recorded (they will run again on resume), the run is marked interrupted,
    and the interrupt is re-raised for the caller.
    """
    done_ids = {r.trial_id for r in store.trials() if not (rerun_errors and r.status == "error")}
    todo = [s for s in specs if s.trial_id not in done_ids]
    progress = RunProgress(total=len(specs), done=len(specs) - len(todo),
                           skipped=len(specs) - len(todo))
    executor = executor or LocalExecutor(parallel)
    stop = threading.Event()
    # a remote executor's trials open their own sandboxes
    remote = executor if isinstance(executor, RemoteExecutor) and provider is None else None
    pools = (SandboxPool(parallel, plan=sandbox_plan(todo))
             if provider is None and remote is None else None)
    tracked = _Tracked(provider or pools or open_fresh)  # a remote executor never calls it
    store.mark("running")
    records = (remote.run_trials(todo, store.path, stop) if remote is not None
               else executor.run(lambda s: _safe_trial(s, store.path, tracked, stop), todo, stop))
    try:
        for record in records:
            store.append_trial(record)
            progress.done += 1
            progress.passed += int(record.passed)
            progress.cost_usd += record.usage.cost_usd
            progress.records.append(record)
            if on_trial:
                on_trial(record, progress)
    except BaseException as exc:
        stop.set()
        tracked.close_all()
        records.close()  # waits for running trials, which now end at once
        store.mark("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    finally:
        if pools is not None:
            pools.close()
    store.mark("finished")
    return progress
