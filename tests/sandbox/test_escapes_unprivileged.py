"""Issue 11 as an ordinary user: the core attacks again, launched by a non-root caller.

Root and non-root callers take different paths through both backends (uid
mapping, cgroups or rlimits, who owns the socket folder), so the attack modules
run a second time in a child pytest as an unprivileged uid (`setpriv`), with its
own HOME, state and temporary folders.

The child must be able to run this checkout's interpreter. On CI (a fresh machine
where everything runs as root) it lives under /root/.pyenv and /root is mode
0700, so `.ci/run` lets others traverse /root first. When CI says the run is
required (CELLPROMPT_REQUIRE_DOCKER=1 or CELLPROMPT_REQUIRE_UNPRIVILEGED=1), a
child that cannot start fails this test with the fix instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.attacks import BACKENDS

REPO = Path(__file__).resolve().parents[2]
UID = int(os.environ.get("CELLPROMPT_TEST_UNPRIVILEGED_UID", "65534"))
# test_hostile.py is not among them: it plants its secret in the checkout, which only root
# may write; the escape modules cover its privilege checks.
MODULES = ["tests/sandbox/test_escapes.py", "tests/sandbox/test_escapes_service.py",
           "tests/sandbox/test_escapes_files.py"]
REQUIRED = any(os.environ.get(flag) == "1" for flag in
               ("CELLPROMPT_REQUIRE_DOCKER", "CELLPROMPT_REQUIRE_UNPRIVILEGED"))


def _cannot(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (required: CELLPROMPT_REQUIRE_DOCKER/UNPRIVILEGED=1)")
    pytest.skip(reason)


def _engine_group() -> list[str]:
    """The group of the Docker socket, as a non-root docker user would have it."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    path = Path(host.removeprefix("unix://"))
    try:
        gid = path.stat().st_gid
    except OSError:
        return ["--clear-groups"]
    return ["--groups", str(gid)] if gid != 0 else ["--clear-groups"]


@pytest.fixture(scope="module")
def as_user() -> Iterator[tuple[list[str], dict[str, str], Path]]:
    """The command prefix, environment and home of the unprivileged child."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: the whole suite is the unprivileged run")
    if shutil.which("setpriv") is None:
        _cannot("setpriv (util-linux) is not installed")
    home = Path(tempfile.mkdtemp(prefix="cp-u-"))  # short: sockets live under it
    for sub in ("state", "tmp", "cache"):
        (home / sub).mkdir()
    for path in (home, *home.iterdir()):
        os.chown(path, UID, UID)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CELLPROMPT_STATE", "CELLPROMPT_CACHE", "PYTEST_"))}
    env.update(HOME=str(home), USER="cp-unprivileged", LOGNAME="cp-unprivileged",
               TMPDIR=str(home / "tmp"), CELLPROMPT_STATE_DIR=str(home / "state"),
               CELLPROMPT_CACHE_DIR=str(home / "cache"), PYTHONDONTWRITEBYTECODE="1")
    prefix = ["setpriv", "--reuid", str(UID), "--regid", str(UID), *_engine_group(), "--"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import cellprompt, tests"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        _cannot(f"uid {UID} cannot run {sys.executable} on this checkout "
                f"({probe.stderr.strip()[-300:]}); a folder above it is not traversable by "
                "others: `.ci/run` does `chmod o+x` on it (/root is 0700 on a fresh machine)")
    yield prefix, env, home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_core_attacks_as_an_unprivileged_user(
        backend: str, as_user: tuple[list[str], dict[str, str], Path]) -> None:
    prefix, env, home = as_user
    argv = [*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp", str(home / "tmp" / f"pytest-{backend}"), "-k", backend,
            "-o", "addopts=-ra --strict-markers", *MODULES]
    child = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=1500)
    tail = "\n".join(child.stdout.strip().splitlines()[-40:])
    assert child.returncode == 0, f"as uid {UID}, the {backend} attacks failed:\n{tail}"
    assert " passed" in tail.splitlines()[-1], tail
