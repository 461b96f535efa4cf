"""Start sandbox processes from one thread that lives as long as the interpreter.

`--die-with-parent` (PR_SET_PDEATHSIG) fires when the *thread* that forked the
sandbox exits, not the process. A warm pool refills from a background thread;
had that thread forked the sandboxes, closing the pool would kill sandboxes
still in use. Forking from one immortal daemon thread ties every sandbox to
the life of the process instead.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from concurrent.futures import Future
from typing import Any

_jobs: queue.Queue[tuple[dict[str, Any], Future[subprocess.Popen[bytes]]]] = queue.Queue()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _loop() -> None:
    while True:
        kwargs, fut = _jobs.get()
        try:
            fut.set_result(subprocess.Popen(**kwargs))
        except BaseException as exc:
            fut.set_exception(exc)


def popen(**kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(**kwargs)`, forked by the spawner thread."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="cellprompt-spawner", daemon=True)
            _thread.start()
    fut: Future[subprocess.Popen[bytes]] = Future()
    _jobs.put((kwargs, fut))
    return fut.result()
