"""Issue 11, files: the host follows no path agent code controls.

The red team swapped a workspace folder for a symlink to a host folder between the
host's listing and its copy, and the host copied a host file into the run's
artifacts. Here agent code flips folders and files between real ones and symlinks
to host paths, as fast as it can, while the host exports the workspace again and
again; no host file may be read into the export or written through a link, and
no setuid/setgid bit may reach the host.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.sandbox import HttpSandbox, state
from tests.sandbox.attacks import BACKENDS, run_ok
from tests.sandbox.conftest import open_for

pytestmark = pytest.mark.parametrize("exporter", BACKENDS, indirect=True, scope="module")

ROUNDS = 12

# Each flipped name swaps atomically (renameat2 RENAME_EXCHANGE) between a real entry and
# a symlink to a host path, as fast as a thread can: no listing stays true for long.
FLIPPER = """
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs('/workspace/race', exist_ok=True)
flipping = True
def flip(name, host_target, make_real):
    path, spare = f'/workspace/race/{{name}}', f'/workspace/race/.{{name}}'
    make_real(path)
    os.symlink(host_target, spare)
    while flipping:
        libc.renameat2(-100, spare.encode(), -100, path.encode(), 2)
def real_dir(p):
    os.makedirs(p)
    for name in ('secret.txt', 'planted-{innocent}.txt'):
        with open(os.path.join(p, name), 'w') as fh:
            fh.write('innocent {innocent}')
def real_file(p):
    with open(p, 'w') as fh:
        fh.write('innocent {innocent}')
threads = [threading.Thread(target=flip, args=('d', {host_dir!r}, real_dir), daemon=True),
           threading.Thread(target=flip, args=('f', {host_file!r}, real_file), daemon=True),
           threading.Thread(target=flip, args=('up', '../' * 12 + {host_dir!r}.lstrip('/'),
                                               real_dir), daemon=True)]
for t in threads:
    t.start()
os.symlink({host_file!r}, '/workspace/static-link')
os.symlink({host_dir!r}, '/workspace/static-dir-link')
print('flipping')
"""


@pytest.fixture(scope="module")
def exporter(request: pytest.FixtureRequest) -> Iterator[HttpSandbox]:
    with open_for(request.param, memory="512m", cpus=1.0) as sb:
        yield sb


@pytest.fixture
def host_secret(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A host folder with a secret file: what a symlink in the workspace would point at."""
    marker = secrets.token_hex(8)
    folder = tmp_path / "host-secret"
    folder.mkdir()
    (folder / "secret.txt").write_text(f"HOST SECRET {marker}")
    yield folder, marker


def _regular_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):  # never into a symlinked folder
        for name in dirs + files:
            path = Path(folder) / name
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


def test_symlink_swaps_during_export_copy_no_host_file(exporter: HttpSandbox, tmp_path: Path,
                                                      host_secret: tuple[Path, str]) -> None:
    folder, marker = host_secret
    innocent = secrets.token_hex(4)
    assert "flipping" in run_ok(exporter, FLIPPER.format(
        host_dir=str(folder), host_file=str(folder / "secret.txt"), innocent=innocent))
    try:
        for i in range(ROUNDS):
            dest = tmp_path / f"export-{i}"
            exporter.export_workspace(dest, 16 << 20)
            for path in _regular_files(dest):
                assert marker not in path.read_text(errors="replace"), \
                    f"round {i}: the host copied its own file into the export as {path}"
            for path in dest.rglob("*"):
                if path.is_symlink():  # a link may be kept, but never one out of the export
                    assert path.resolve().is_relative_to(dest.resolve()), \
                        f"round {i}: the export holds {path} -> {os.readlink(path)}"
    finally:
        run_ok(exporter, "flipping = False\nfor t in threads:\n    t.join()\n"
                         "import shutil\nshutil.rmtree('/workspace/race')")
    assert sorted(p.name for p in folder.iterdir()) == ["secret.txt"], \
        "the export wrote through a symlink into a host folder"
    assert (folder / "secret.txt").read_text() == f"HOST SECRET {marker}"


def test_export_is_capped_and_says_what_it_left_out(exporter: HttpSandbox,
                                                    tmp_path: Path) -> None:
    run_ok(exporter, "import os\nos.makedirs('/workspace/big', exist_ok=True)\n"
                     "for i in range(4):\n"
                     "    open(f'/workspace/big/{i}.bin', 'wb').write(os.urandom(1 << 20))")
    try:
        skipped = exporter.export_workspace(tmp_path / "out", 2_500_000)
        total = sum(p.stat().st_size for p in _regular_files(tmp_path / "out"))
        assert total <= 2_500_000, f"the export copied {total} bytes past a 2.5 MB cap"
        assert any("big/" in s for s in skipped), skipped
    finally:
        run_ok(exporter, "import shutil\nshutil.rmtree('/workspace/big')")


def test_no_setuid_or_setgid_bit_reaches_the_host(exporter: HttpSandbox, tmp_path: Path) -> None:
    """Set every way agent code can (chmod, open/mkdir modes, a setgid folder's inheritance);
    neither the export nor any host file of the sandbox may carry the bit."""
    out = run_ok(exporter, """
import os, subprocess
os.makedirs('/workspace/bits', exist_ok=True)
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = 'ok'
    except (OSError, subprocess.CalledProcessError) as exc:
        results[name] = getattr(exc, 'errno', None) or 'refused'
open('/workspace/bits/suid', 'w').close()
attempt('chmod', lambda: os.chmod('/workspace/bits/suid', 0o6755))
attempt('open-mode', lambda: os.close(os.open('/workspace/bits/created', os.O_CREAT | os.O_WRONLY, 0o6755)))
attempt('mkdir-mode', lambda: os.mkdir('/workspace/bits/sgid-dir', 0o2775))
attempt('chmod-dir', lambda: os.chmod('/workspace/bits', 0o2775))
attempt('chmod-tool', lambda: subprocess.run(['chmod', 'u+s,g+s', '/workspace/bits/suid'],
                                            check=True, capture_output=True))
os.makedirs('/workspace/bits/inherit', exist_ok=True)
open('/workspace/bits/inherit/child', 'w').close()
flagged = []
for folder, dirs, files in os.walk('/workspace/bits'):
    for name in dirs + files + ['.']:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        if mode & 0o6000:
            flagged.append(os.path.join(folder, name))
print(results, sorted(set(flagged)))
""")
    dest = tmp_path / "out"
    exporter.export_workspace(dest, 1 << 20)
    bits = [str(p) for p in [dest, *dest.rglob("*")] if p.lstat().st_mode & 0o6000]
    assert not bits, f"setuid/setgid bits reached the host export: {bits} (inside: {out})"
    host_side = state.sandbox_dir(exporter.id)
    bits = [str(p) for p in host_side.rglob("*") if p.lstat().st_mode & 0o6000]
    assert not bits, f"setuid/setgid bits on the sandbox's host files: {bits} (inside: {out})"
