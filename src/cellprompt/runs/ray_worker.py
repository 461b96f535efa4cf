"""What runs inside a Ray worker: settings from the driver, staging, one trial, its artifacts packed.

Kept free of any `ray` import at module level (and of driver state) so Ray can
pickle these functions by reference and a worker imports only what it uses.
A worker writes a trial into a private temporary run folder of its node and
returns the record together with a tar of the trial's artifacts; the driver
unpacks it into the real run folder before it appends the record, so
`trials.jsonl` is written by the driver alone, as with the local executor.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import traceback
from pathlib import Path
from typing import Any

from cellprompt.records.run import TrialRecord, TrialSpec
from cellprompt.runs.staging import StagedFile, ensure_staged

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


def node_trial(spec: TrialSpec, files: list[StagedFile], env: dict[str, str]) -> tuple[str, bytes]:
    """One trial on this node, in a fresh sandbox of the node's own backend.

    Returns the record as JSON and its artifacts as a tar. A bug becomes the trial's
    `error` record, exactly as in the local runner; a dying worker is Ray's to retry.
    """
    from cellprompt.runs.trial import execute_trial

    run_dir = Path(tempfile.mkdtemp(prefix="cellprompt-trial-"))
    try:
        try:
            _apply_env(env)
            ensure_staged(files, _fetch)
            record = execute_trial(spec, run_dir)
        except Exception as exc:  # recorded as the trial's error, not swallowed
            tail = "".join(traceback.format_exception(exc)[-3:]).strip()
            record = TrialRecord(trial_id=spec.trial_id, spec=spec, status="error",
                                 error=f"internal error: {type(exc).__name__}: {exc}\n{tail}")
        return record.model_dump_json(), _pack(run_dir / "artifacts" / spec.trial_id)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def node_check(backends: list[str], env: dict[str, str]) -> str | None:
    """Why this node cannot run trials (no working sandbox backend, another cellprompt), or None."""
    from cellprompt import __version__
    from cellprompt.errors import CellpromptError
    from cellprompt.sandbox import get_backend

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
