"""Trials on Ray: a run spread over a cluster, streamed back into the driver's run folder.

A run's trials play in trial slots (`ray_worker.TrialSlot`), one Ray actor per
trial at once, each asking for the CPUs and memory of a sandbox, so Ray packs
them onto nodes; a slot opens each trial's sandbox with whatever backend its
node has, launching it while the slot's previous trial still runs, and the
record comes back to the driver, which alone appends to `trials.jsonl`. A slot
that dies mid-trial is restarted by Ray and the trial run again (at most
`MAX_TRIAL_RETRIES` times); a driver that dies loses only unfinished trials,
which `--resume` runs again. Slots outlive a run that ended normally and serve the
executor's next one (an evolution runs one per candidate): each slot is a Python
worker that takes seconds to start. They end with the executor. The `Executor`
protocol's `run` (a trial function of the caller's) sends one Ray task per trial.
Ray is imported only when this executor starts, so it stays an optional extra."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from cellprompt.errors import RunError, UsageError
from cellprompt.records.run import TrialRecord, TrialSpec
from cellprompt.runs.executors import Records, TrialFn

MAX_TRIAL_RETRIES = 2  # re-runs of a trial whose worker or node died
PREFLIGHT_TIMEOUT_S = 600.0  # a loaded node may take minutes to start a worker
POLL_S = 0.5  # how often a waiting driver looks at its stop event
STOP_WAIT_S = 60.0  # how long closing waits for cancelled trials, then for slots to close sandboxes
NAMESPACE = "cellprompt"
TASK_NAME_PREFIX = "cellprompt-trial:"  # Ray names the worker process `ray::<task name>`
INSTALL_HINT = "the ray executor needs Ray: pip install 'cellprompt[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at `address` (`auto`, `ray://host:port`, `host:port`), or start a local one.

    A local cluster listens on loopback only, with no dashboard and no usage reporting.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for 127.0.0.1
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    import logging

    try:
        ray.init(address=address, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "on this machine"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"cannot start or reach the Ray cluster {where}: {first}") from None
    return ray


def trial_resources() -> dict[str, float]:
    """What one trial asks of a node: its sandbox's CPUs and memory limit."""
    from cellprompt.config import get_settings
    from cellprompt.sandbox.limits import parse_memory

    settings = get_settings()
    return {"num_cpus": float(settings.sandbox_cpus), "memory": float(parse_memory(settings.sandbox_memory))}


def _slots(nodes: list[dict], need: dict[str, float]) -> int:
    """How many trials fit at once on the alive nodes (0: none fits anywhere)."""
    total = 0
    for node in nodes:
        have = node.get("Resources", {})
        fits = [have.get("CPU", 0.0) / need["num_cpus"] if need["num_cpus"] else math.inf,
                have.get("memory", 0.0) / need["memory"] if need["memory"] else math.inf]
        total += int(min(fits)) if min(fits) != math.inf else 1
    return total


class RayExecutor:
    """Runs trials on a Ray cluster; see the module docstring. `parallel` > 1 caps trials in flight."""

    def __init__(self, address: str | None = None, parallel: int = 1,
                 max_retries: int = MAX_TRIAL_RETRIES) -> None:
        self.address = address
        self.parallel = max(1, parallel)
        self.max_retries = max_retries
        self._checked: set[str] = set()  # backends whose nodes passed preflight
        self._kept: list[Any] = []  # idle trial slots from the last run, for the next one
        weakref.finalize(self, _kill_slots, self._kept)

    # -- set-up ---------------------------------------------------------------------------

    def _start(self, backends: Iterable[str]) -> tuple[Any, int]:
        """Connect, and refuse a cluster some node of which cannot run trials; returns (ray, window)."""
        from cellprompt.runs.ray_worker import node_check, settings_env
        from cellprompt.version import __version__

        ray = connect(self.address)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        need = trial_resources()
        slots = _slots(nodes, need)
        if slots == 0:
            gib = need["memory"] / 2**30
            raise UsageError(f"no Ray node has the {need['num_cpus']:g} CPU(s) and {gib:.1f} GiB a trial "
                             "asks for: lower CELLPROMPT_SANDBOX_CPUS / CELLPROMPT_SANDBOX_MEMORY or add "
                             "a larger node")
        todo = sorted(set(backends) - self._checked)
        if todo:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            check = ray.remote(node_check)
            env = {**settings_env(), "CELLPROMPT_VERSION": __version__}
            refs = {n["NodeManagerAddress"] + " (" + n["NodeID"][:8] + ")": check.options(
                num_cpus=0, max_retries=1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(todo, env) for n in nodes}
            ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PREFLIGHT_TIMEOUT_S)
            for name, ref in refs.items():
                if ref not in ready:
                    raise RunError(f"Ray node {name} did not answer the preflight check in "
                                   f"{PREFLIGHT_TIMEOUT_S:.0f} s: is it overloaded or unreachable?")
                reason = ray.get(ref)
                if reason:
                    raise RunError(f"Ray node {name} cannot run trials: {reason}; fix the node or take "
                                   "it out of the cluster")
            self._checked.update(todo)
        window = self.parallel if self.parallel > 1 else slots
        return ray, max(1, window)

    # -- the two entry points -------------------------------------------------------------

    def run(self, fn: TrialFn, specs: Iterable[TrialSpec], stop: threading.Event) -> Records:
        """The `Executor` protocol: `fn` (picklable) runs on workers; its exceptions reach the caller."""
        ray, window = self._start([])
        remote = ray.remote(_call)
        shipped = ray.put(fn)

        def submit(spec: TrialSpec) -> Any:
            return remote.options(name=TASK_NAME_PREFIX + spec.trial_id, max_retries=self.max_retries,
                                  **trial_resources()).remote(shipped, spec)

        with closing(self._stream(ray, submit, specs, stop, window)) as stream:
            for _spec, result in stream:
                yield result

    def run_trials(self, specs: Iterable[TrialSpec], run_dir: Path,
                   stop: threading.Event) -> Records:
        """Trials on the cluster into `run_dir`: artifacts unpacked there before each record is yielded.

        Trials run in `TrialSlot` actors, one per trial at once, each asking for a trial's
        CPUs and memory (so Ray packs them onto nodes) and launching its next trial's
        sandbox while the current one plays; a slot that dies is restarted by Ray and its
        trial run again, at most `max_retries` times.
        """
        from cellprompt.runs.ray_worker import TrialSlot, settings_env, unpack
        from cellprompt.runs.staging import plan_staging

        specs = list(specs)
        if not specs:
            return
        ray, window = self._start({s.sandbox_backend for s in specs})
        bundles = plan_staging(specs, ray.put)
        env = settings_env()
        slot_class = ray.remote(TrialSlot).options(max_restarts=-1, max_task_retries=self.max_retries,
                                                   **trial_resources())
        wanted = min(window, len(specs))
        slots, self._kept[:] = self._kept[:wanted], self._kept[wanted:]
        slots += [slot_class.remote() for _ in range(wanted - len(slots))]

        def call(slot: Any, spec: TrialSpec, upcoming: TrialSpec | None) -> Any:
            return slot.run.options(name=TASK_NAME_PREFIX + spec.trial_id).remote(
                spec, bundles.get(spec.task_ref, []), env, upcoming,
                bundles.get(upcoming.task_ref, []) if upcoming else None)

        with closing(self._feed(ray, slots, call, specs, stop)) as stream:
            for spec, result in stream:
                if isinstance(result, TrialRecord):  # the worker died too often: nothing came back
                    yield result
                    continue
                record_json, artifacts = result
                unpack(artifacts, run_dir / "artifacts" / spec.trial_id)
                yield TrialRecord.model_validate_json(record_json)

    def _lost_record(self, spec: TrialSpec, exc: Exception) -> TrialRecord:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return TrialRecord(trial_id=spec.trial_id, spec=spec, status="error",
                           error=f"internal error: the Ray worker running this trial died on each of "
                                 f"its {self.max_retries + 1} attempt(s) ({type(exc).__name__}: {first})")

    # -- streaming ------------------------------------------------------------------------

    def _stream(self, ray: Any, submit: Callable[[TrialSpec], Any], specs: Iterable[TrialSpec],
                stop: threading.Event, window: int) -> Generator[tuple[TrialSpec, Any], None, None]:
        """Keep `window` trials in flight, yield each result as it ends; cancel the rest on exit."""
        pending = iter(specs)
        running: dict[Any, TrialSpec] = {}
        try:
            while True:
                while not stop.is_set() and len(running) < window:
                    spec = next(pending, None)
                    if spec is None:
                        break
                    running[submit(spec)] = spec
                if not running:
                    return
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in done:
                    spec = running.pop(ref)
                    yield spec, ray.get(ref)  # the trial function's exception is also its cause's type
        finally:
            for ref in running:  # Ctrl-C, an error, or a consumer that stopped reading
                try:
                    ray.cancel(ref, force=False)
                except Exception:  # a task that just finished cannot be cancelled
                    continue

    def _feed(self, ray: Any, slots: list[Any], call: Callable[[Any, TrialSpec, TrialSpec | None], Any],
              specs: Iterable[TrialSpec], stop: threading.Event,
              ) -> Generator[tuple[TrialSpec, Any], None, None]:
        """Give each slot one trial at a time, naming its next one ahead; yield results as they end.

        A slot is fed once Ray has started it (a busy cluster starts slots as room frees up).
        A trial is announced to a slot only while there are more trials left than slots
        without work, and a slot with nothing left takes a trial announced to a busy one,
        so the end of a run is not held back by announcements.
        """
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        pending = deque(specs)
        starting = {slot.__ray_ready__.remote(): slot for slot in slots}
        idle: list[Any] = []  # started slots with nothing to do
        announced: dict[Any, TrialSpec] = {}  # busy slot -> the trial it was told comes next
        running: dict[Any, tuple[Any, TrialSpec]] = {}

        def feed(slot: Any) -> None:
            spec = None if stop.is_set() else (
                announced.pop(slot, None) or (pending.popleft() if pending else None)
                or (announced.pop(next(iter(announced))) if announced else None))
            if spec is None:
                idle.append(slot)
                return
            upcoming = pending.popleft() if len(pending) > len(starting) + len(idle) else None
            if upcoming is not None:
                announced[slot] = upcoming
            running[call(slot, spec, upcoming)] = (slot, spec)

        try:
            while running or (starting and not stop.is_set() and (pending or announced)):
                done, _ = ray.wait([*running, *starting], num_returns=1, timeout=POLL_S)
                for ref in done:
                    if ref in starting:
                        slot = starting.pop(ref)
                        try:
                            ray.get(ref)
                        except RayError:  # a slot that cannot start gets no trial
                            continue
                        feed(slot)
                        continue
                    slot, spec = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayTaskError:  # a bug outside the trial's own guard: the run stops
                        raise
                    except RayError as exc:  # the slot or its node died, more often than retried
                        if isinstance(exc, TaskCancelledError):
                            raise
                        result = self._lost_record(spec, exc)
                    feed(slot)  # before the driver's own work on the result
                    yield spec, result
            if not stop.is_set() and (pending or announced):
                raise RunError("no Ray trial slot could start: see `ray status` for the cluster's "
                               "resources")
        finally:
            started = [slot for slot in slots if slot not in starting.values()]
            self._close_slots(ray, slots, started, running, keep=not running and not stop.is_set())

    def _close_slots(self, ray: Any, slots: list[Any], started: list[Any], running: dict[Any, Any],
                     keep: bool) -> None:
        """Stop running trials at their next check, close launched sandboxes, then end every
        slot, or (`keep`: the run ended normally) keep the started ones for the next run."""
        for ref in running:  # Ctrl-C, an error, or a consumer that stopped reading
            try:
                ray.cancel(ref)  # a slot's trial sees it through `is_canceled`
            except Exception:  # a trial that just finished cannot be cancelled
                continue
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=STOP_WAIT_S)
        if releases := [slot.release.remote() for slot in started]:
            ray.wait(releases, num_returns=len(releases), timeout=STOP_WAIT_S)
        if keep:
            self._kept += started
        _kill_slots([slot for slot in slots if not keep or slot not in started])


def _kill_slots(slots: list[Any]) -> None:
    """End trial slots (also when their executor is collected, or the driver exits)."""
    ray = sys.modules.get("ray")
    for slot in slots:
        with contextlib.suppress(Exception):  # a cluster already shut down took them with it
            if ray is not None and ray.is_initialized():
                ray.kill(slot, no_restart=True)
    slots.clear()


def _call(fn: TrialFn, spec: TrialSpec) -> TrialRecord:
    return fn(spec)
