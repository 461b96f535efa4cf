"""What runs inside a Ray worker: settings from the driver, staging, trials, their artifacts packed.

Kept free of any `ray` import at module level (and of driver state) so Ray can
pickle these by reference and a worker imports only what it uses. A trial slot
(`TrialSlot`, one Ray actor per trial running at once) writes each trial into a
private temporary run folder of its node and returns the record together with
a tar of the trial's artifacts; the driver
unpacks it into the real run folder before it appends the record, so
`trials.jsonl` is written by the driver alone, as with the local executor.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cellprompt.records.run import TrialRecord, TrialSpec
from cellprompt.runs.staging import StagedFile, ensure_staged
from cellprompt.runs.trial import SandboxProvider, open_fresh
from cellprompt.sandbox import SandboxPool

log = logging.getLogger(__name__)

# Node-local settings: the worker's own machine decides these (sockets, caches).
NODE_LOCAL_SETTINGS = frozenset({"state_dir", "cache_dir", "outputs_dir"})
PATH_SETTINGS = frozenset({"datasets_dir", "llm_cache_dir"})


def settings_env() -> dict[str, str]:
    """The driver's settings as `CELLPROMPT_*` variables, so every worker runs trials alike.

    Paths are made absolute (workers do not share the driver's working folder); API keys
    are not settings and never travel: each node reads its own environment or `.env`.
    """
    import json

    from cellprompt.config import get_settings

    env: dict[str, str] = {}
    for name, value in get_settings().model_dump().items():
        if name in NODE_LOCAL_SETTINGS or value is None:
            continue
        if name in PATH_SETTINGS:
            value = str(Path(value).resolve())
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        env[f"CELLPROMPT_{name.upper()}"] = str(value)
    return env


def _apply_env(env: dict[str, str]) -> None:
    """Settings of this trial's run (a worker process may serve several runs in turn)."""
    from cellprompt.config import get_settings, reset_settings

    if any(os.environ.get(k) != v for k, v in env.items()):
        os.environ.update(env)
        reset_settings()
    get_settings()


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    if folder.is_dir():
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    """Replace `dest` by the artifacts in `data` (a re-run trial's old ones go)."""
    if dest.exists():
        shutil.rmtree(dest)
    if not data:
        return
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(dest, filter="data")  # no absolute paths, no links leaving dest


def _fetch(ref: Any) -> bytes:
    import ray

    return ray.get(ref)


def _node_trial(spec: TrialSpec, prepare: Callable[[], None], provider: SandboxProvider) -> tuple[str, bytes]:
    """`prepare` (settings, staging), then one trial in a private temporary run folder of this node.

    Returns the record (with this node's id) as JSON and its artifacts as a tar. A bug becomes
    the trial's `error` record, exactly as in the local runner; a dying worker is Ray's to
    retry. The trial stops at its next check when the driver cancels it.
    """
    import ray

    from cellprompt.runs.trial import execute_trial

    context = ray.get_runtime_context()
    run_dir = Path(tempfile.mkdtemp(prefix="cellprompt-trial-"))
    try:
        try:
            prepare()
            record = execute_trial(spec, run_dir, provider=provider, should_stop=context.is_canceled)
        except Exception as exc:  # recorded as the trial's error, not swallowed
            tail = "".join(traceback.format_exception(exc)[-3:]).strip()
            record = TrialRecord(trial_id=spec.trial_id, spec=spec, status="error",
                                 error=f"internal error: {type(exc).__name__}: {exc}\n{tail}")
        record.node = context.get_node_id()
        return record.model_dump_json(), _pack(run_dir / "artifacts" / spec.trial_id)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


class TrialSlot:
    """One trial slot of a node, as a Ray actor: it plays the trials the driver sends, one at a time.

    Why an actor rather than a task per trial: starting a sandbox takes seconds, and the
    local runner hides them by launching the next trial's sandbox while the current one
    runs (a planned `SandboxPool`). A slot does the same: with each trial the driver names the one
    it will send this slot next, and the slot stages that trial's files and launches its
    sandbox in the background. A slot sent another trial than announced (the driver gave
    the announced one to an idle slot) opens a fresh sandbox and closes the launched one.
    Sandboxes still serve one trial each: only their start moves earlier.
    """

    def __init__(self) -> None:
        self._next: SandboxPool | None = None

    def run(self, spec: TrialSpec, files: list[StagedFile], env: dict[str, str],
            upcoming: TrialSpec | None = None, upcoming_files: list[StagedFile] | None = None,
            ) -> tuple[str, bytes]:
        """The record as JSON and its artifacts as a tar; `upcoming`: this slot's next trial."""
        current, self._next = self._next, None

        def prepare() -> None:
            _apply_env(env)
            ensure_staged(files, _fetch)
            if upcoming is not None:
                self._prelaunch(upcoming, upcoming_files or [])

        try:
            return _node_trial(spec, prepare, current or open_fresh)
        finally:
            if current is not None:
                current.close()  # stops a sandbox launched for another trial than this one

    def _prelaunch(self, spec: TrialSpec, files: list[StagedFile]) -> None:
        """Stage `spec`'s files and start its sandbox; a failure is left to that trial's own turn."""
        from cellprompt.runs.runner import sandbox_plan

        try:
            ensure_staged(files, _fetch)
            self._next = SandboxPool(1, plan=sandbox_plan([spec]))
        except Exception:  # its trial stages again and records what went wrong
            log.debug("prelaunching the sandbox of %s failed", spec.trial_id, exc_info=True)

    def release(self) -> None:
        """Stop the sandbox launched for a trial that will not come (the run ended or stopped)."""
        if self._next is not None:
            self._next.close()
            self._next = None


def node_check(backends: list[str], env: dict[str, str]) -> str | None:
    """Why this node cannot run trials (no working sandbox backend, another cellprompt), or None."""
    from cellprompt.errors import CellpromptError
    from cellprompt.sandbox import get_backend
    from cellprompt.version import __version__

    want = env.get("CELLPROMPT_VERSION")
    if want and want != __version__:
        return f"it has cellprompt {__version__}, the driver {want}: install the same version"
    _apply_env({k: v for k, v in env.items() if k != "CELLPROMPT_VERSION"})
    for name in backends:
        try:
            get_backend(name).check()
        except CellpromptError as exc:
            return f"no working sandbox backend ({name}: {exc})"
    return None
