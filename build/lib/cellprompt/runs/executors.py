"""How trials are dispatched. Only a local thread pool today; a Ray executor fits the same shape.

Trials spend their time waiting on model APIs and on kernels in other processes,
so threads give real parallelism here without pickling anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

from cellprompt.runs.schema import TrialRecord, TrialSpec

TrialFn = Callable[[TrialSpec], TrialRecord]


class Executor(Protocol):
    """Runs trial functions and yields their records as each one finishes.

    When the consumer stops early (Ctrl-C, an error), `stop` is set before the
    executor waits for running trials, so they end at their next check.
    """

    def run(self, fn: TrialFn, specs: Iterable[TrialSpec],
            stop: threading.Event) -> Iterator[TrialRecord]: ...


class LocalExecutor:
    """At most `parallel` trials at once in threads, submitted lazily so cancel stops the rest."""

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = max(1, parallel)

    def run(self, fn: TrialFn, specs: Iterable[TrialSpec],
            stop: threading.Event) -> Iterator[TrialRecord]:
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
