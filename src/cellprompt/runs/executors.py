"""How trials are dispatched: a local thread pool (the default), or Ray (`ray_executor.py`).

Trials spend their time waiting on model APIs and on kernels in other processes,
so threads give real parallelism here without pickling anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cellprompt.errors import UsageError
from cellprompt.records.run import TrialRecord, TrialSpec
from cellprompt.registry import Registry
from cellprompt.runs.store import RunStore

TrialFn = Callable[[TrialSpec], TrialRecord]
# What an executor returns: records as trials end. The runner closes it when it stops early;
# closing must stop dispatching and return once running trials have ended.
Records = Generator[TrialRecord, None, None]


class Executor(Protocol):
    """Runs trial functions and yields their records as each one finishes.

    When the consumer stops early (Ctrl-C, an error), `stop` is set before the
    executor waits for running trials, so they end at their next check.
    """

    def run(self, fn: TrialFn, specs: Iterable[TrialSpec],
            stop: threading.Event) -> Records: ...


@runtime_checkable
class RemoteExecutor(Protocol):
    """An executor whose trials run in other processes or machines, each opening its own sandbox.

    The runner hands it the specs and the run folder rather than a trial function:
    sandboxes cannot travel, and artifacts must come back into `run_dir` before a
    record is yielded (the runner appends it).
    """

    def run_trials(self, specs: Iterable[TrialSpec], run_dir: Path,
                   stop: threading.Event) -> Records: ...


ExecutorFactory = Callable[[int, "str | None"], Executor]  # (parallel, address) -> executor

EXECUTORS: Registry[ExecutorFactory] = Registry("executor")


def make_executor(name: str = "local", *, parallel: int = 1, address: str | None = None) -> Executor:
    """`--executor NAME`: `local` (threads) or `ray` (a cluster at `address`, or a local one)."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise UsageError(EXECUTORS.unknown(name))
    return factory(parallel, address)


def resolve_executor(name: str | None, address: str | None, used: Mapping[str, Any] | None = None,
                     ) -> tuple[str, str | None]:
    """The executor name and Ray address a run uses: the command line's, else what the run used
    before (`used`, from its manifest, on `--resume`), else the settings.

    A resumed run keeps its cluster: a Ray run resumed with no flags goes back to Ray at the
    same address, and `--ray-address` alone moves it to another cluster.
    """
    from cellprompt.config import get_settings

    settings = get_settings()
    used = used or {}
    chosen = name or used.get("name") or settings.executor
    if address is None and chosen == used.get("name"):
        address = used.get("ray_address")
    return chosen, address or settings.ray_address


def remember_executor(store: RunStore, name: str, address: str | None) -> None:
    """Write the executor into the run's manifest (`config.executor`), for `--resume` to reuse."""
    manifest = store.manifest()
    manifest.config["executor"] = {"name": name, "ray_address": address}
    store.write_manifest(manifest)


@EXECUTORS.register("local")
def _local(parallel: int, address: str | None) -> Executor:
    if address:
        raise UsageError("--ray-address goes with --executor ray")
    return LocalExecutor(parallel)


@EXECUTORS.register("ray")
def _ray(parallel: int, address: str | None) -> Executor:
    import importlib.util

    from cellprompt.runs.ray_executor import INSTALL_HINT, RayExecutor

    if importlib.util.find_spec("ray") is None:  # before a run folder is made
        raise UsageError(INSTALL_HINT)
    return RayExecutor(address=address, parallel=parallel)


class LocalExecutor:
    """At most `parallel` trials at once in threads, submitted lazily so cancel stops the rest."""

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = max(1, parallel)

    def run(self, fn: TrialFn, specs: Iterable[TrialSpec],
            stop: threading.Event) -> Records:
        pending = iter(specs)
        running: set[Future[TrialRecord]] = set()
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="trial") as pool:
            try:
                while True:
                    while not stop.is_set() and len(running) < self.parallel:
                        spec = next(pending, None)
                        if spec is None:
                            break
                        running.add(pool.submit(fn, spec))
                    if not running:
                        return
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            except BaseException:
                stop.set()
                for future in running:
                    future.cancel()
                raise
