"""`cellprompt sandbox build`: make the chosen backend's runtime hold the service's requirements.

For bwrap the sandbox's Python is the one running cellprompt (bound read-only
into the sandbox), so building means installing whatever of
`service/requirements.txt` it lacks, then starting a sandbox to prove it works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cellprompt.errors import SandboxError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import SandboxSpec
from cellprompt.sandbox.client import HttpSandbox
from cellprompt.sandbox.process import ProcessLaunched
from cellprompt.sandbox.runtime_data import exposed_summary, forbidden_exposed, scan_code

REQUIREMENTS = Path(__file__).resolve().parent / "service" / "requirements.txt"
# import names of the requirements (distribution names differ for some)
MODULES = ("starlette", "uvicorn", "httptools", "uvloop", "jupyter_client", "ipykernel", "anndata",
           "scanpy", "numpy", "pandas", "scipy", "sklearn", "matplotlib", "seaborn", "leidenalg",
           "igraph")
SELF_CHECK = ("import anndata, scanpy, numpy, pandas, scipy, sklearn, seaborn, leidenalg, igraph\n"
              "import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.show()\nprint('self-check ok')")

Progress = Callable[[str], None]


def missing_modules(python: Path) -> list[str]:
    code = (f"import importlib.util as u; print(' '.join(m for m in {MODULES!r} if u.find_spec(m) is None))")
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise SandboxError(f"the sandbox runtime {python} does not run: {res.stderr.strip()[-300:]}")
    return res.stdout.split()


def build_numba_seed(python: Path, seed: Path) -> None:
    """Run the warm-up (our own code, on the host) into a fresh folder, then move it in place."""
    import shutil
    import tempfile

    from cellprompt.sandbox.process import SERVICE_PACKAGE_PARENT

    seed.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=seed.parent))
    try:
        res = subprocess.run([str(python), "-m", "service.numba_seed", str(tmp / "cache")],
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp),
                                  "PYTHONPATH": str(SERVICE_PACKAGE_PARENT)},
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise SandboxError(f"the numba warm-up failed: {res.stderr.strip()[-400:]}")
        os.replace(tmp / "cache", seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_runtime_data(sb: HttpSandbox, backend: str) -> str:
    """List the data files agent code can see; fail on any that may hold a task's truth.

    Run inside a real sandbox, so it checks what agent code actually sees (the overlays
    of `runtime_data.hidden_paths` for bwrap, the image's deletions for docker).
    """
    import json

    r = sb.execute(scan_code(), timeout=300)
    lines = r.text().strip().splitlines()
    try:
        scan = json.loads(lines[-1]) if r.final_status == "ok" and lines else None
    except json.JSONDecodeError:
        scan = None
    if not isinstance(scan, dict):
        raise SandboxError(f"the {backend} runtime data scan did not run: {r.text()[-300:]}")
    bad = forbidden_exposed(scan)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise SandboxError(f"the {backend} sandbox exposes data that can hold a task's truth: "
                           f"{'; '.join(bad[:3])}{more}; rebuild the runtime without it")
    return exposed_summary(scan)


def build_bwrap(python: Path | None = None, progress: Progress | None = None) -> str:
    """Install missing requirements into the runtime, then self-check; return a summary."""
    from cellprompt.sandbox.bwrap_backend import BwrapBackend, numba_seed_dir

    say = progress or (lambda _msg: None)
    python = python or Path(sys.executable)
    backend = BwrapBackend(python)
    backend.check()
    missing = missing_modules(python)
    if missing:
        say(f"installing into {python}: {', '.join(missing)}")
        res = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise SandboxError(f"pip could not install the sandbox requirements: "
                               f"{res.stderr.strip()[-400:]}")
    seed = numba_seed_dir(python)
    if not seed.is_dir():
        say("compiling scanpy's numba functions once for every sandbox (about 30 s)")
        build_numba_seed(python, seed)
    say("starting a sandbox to self-check")
    launched = backend.launch(SandboxSpec(memory="2g"), state.new_sandbox_id())
    lost = "" if isinstance(launched, ProcessLaunched) and launched.record.cgroups else (
        "; cgroups are not writable here, so limits fall back to rlimits: memory is capped as "
        "address space (tmpfs not counted), there is no CPU quota, and agent code runs at "
        "normal priority, so a fork bomb can delay the service's timeouts")
    with HttpSandbox(launched, backend.name) as sb:
        r = sb.execute(SELF_CHECK, timeout=300)
        if r.final_status != "ok" or not r.images():
            raise SandboxError(f"the bwrap sandbox self-check failed: {r.text()[-400:]}")
        say("listing the data files the sandbox runtime exposes")
        exposed = check_runtime_data(sb, "bwrap")
    return (f"bwrap runtime ready: {python} ({len(MODULES)} requirements present, self-check ok; "
            f"exposes {exposed}, none holding a task's data){lost}")


def build(backend: str, progress: Progress | None = None, **options: object) -> str:
    """Prepare `backend`; docker delegates to the docker backend's `build_image`."""
    if backend == "bwrap":
        return build_bwrap(progress=progress)
    if backend == "docker":
        from cellprompt.sandbox import docker_image
        from cellprompt.sandbox.api import open_sandbox

        tag = docker_image.build_image(progress=progress, **options)  # type: ignore[arg-type]
        if tag != docker_image.image_tag():  # not the image sandboxes use: nothing to prove
            return f"docker image ready: {tag}"
        if progress:
            progress("listing the data files the sandbox image exposes")
        with open_sandbox(backend="docker") as sb:
            exposed = check_runtime_data(sb, "docker")
        return f"docker image ready: {tag} (exposes {exposed}, none holding a task's data)"
    if backend == "local":
        missing = missing_modules(Path(sys.executable))
        if missing:
            raise SandboxError(f"missing in this Python: {', '.join(missing)}; "
                               f"pip install -r {REQUIREMENTS}")
        return "local backend needs nothing beyond this Python's requirements (all present)"
    raise SandboxError(f"unknown sandbox backend {backend!r}: use bwrap, docker or local")
