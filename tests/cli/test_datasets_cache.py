"""Datasets live in the user's cache folder unless configured; a command never fills the current
folder (issue 15: `datasets show builtin:…` wrote 4.5 MB into ./datasets/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def show(cwd: Path, cache_home: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPROMPT_")}
    env |= {"XDG_CACHE_HOME": str(cache_home), **extra_env}
    return subprocess.run([sys.executable, "-m", "cellprompt.cli.main", "datasets", "show",
                           "builtin:krumsiek11"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_builtin_datasets_go_to_the_user_cache_not_the_current_folder(tmp_path: Path) -> None:
    cwd, cache = tmp_path / "project", tmp_path / "xdg-cache"
    cwd.mkdir()
    r = show(cwd, cache)
    assert r.returncode == 0 and "krumsiek11" in r.stdout, r.stderr
    assert list(cwd.iterdir()) == []
    assert (cache / "cellprompt" / "datasets" / "builtin" / "krumsiek11.h5ad").is_file()


def test_a_configured_datasets_folder_is_kept(tmp_path: Path) -> None:
    cwd, cache = tmp_path / "project", tmp_path / "xdg-cache"
    cwd.mkdir()
    (cwd / "cellprompt.toml").write_text('datasets_dir = "data"\n')
    assert show(cwd, cache).returncode == 0
    assert (cwd / "data" / "builtin" / "krumsiek11.h5ad").is_file()
    assert not (cache / "cellprompt").exists()
    r = show(cwd, cache, CELLPROMPT_DATASETS_DIR=str(tmp_path / "elsewhere"))  # env beats the file
    assert r.returncode == 0 and (tmp_path / "elsewhere" / "builtin" / "krumsiek11.h5ad").is_file()
