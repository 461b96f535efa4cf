"""One datasets folder for the whole tasks test session: builtins and agent copies are made once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.config import reset_settings


@pytest.fixture(scope="session")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("datasets")
    mp = pytest.MonkeyPatch()
    mp.setenv("CELLPROMPT_DATASETS_DIR", str(folder))
    reset_settings()
    yield folder
    mp.undo()
    reset_settings()
