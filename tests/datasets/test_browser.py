"""The interactive browser (`cellprompt datasets` on a terminal), driven through a real pty."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.datasets.fake_census import DATASETS, FakeCensus

pexpect = pytest.importorskip("pexpect", reason="needs pexpect to drive a terminal")
LUNG = DATASETS[0]["dataset_id"]


def test_browse_filter_pick_download(census: FakeCensus, tmp_path: Path) -> None:
    env = {**os.environ, **census.env(), "CELLPROMPT_DATASETS_DIR": str(tmp_path),
           "COLUMNS": "160", "TERM": "dumb"}
    cli = Path(sys.executable).parent / "cellprompt"
    child = pexpect.spawn(str(cli), ["datasets"], env=env, timeout=60, encoding="utf-8",
                          dimensions=(50, 160))
    child.expect("Version")
    child.sendline("latest")
    for question, answer in (("Organism", "human"), ("Tissue", "lung"), ("Disease", ""),
                             ("Search", "")):
        child.expect(question)
        child.sendline(answer)
    child.expect(LUNG)
    child.expect("Number to download")
    child.sendline("1")
    child.expect("downloaded:")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (tmp_path / f"{LUNG}.h5ad").is_file() and (tmp_path / f"{LUNG}.json").is_file()
    assert '"census_version": "latest"' in (tmp_path / f"{LUNG}.json").read_text()
