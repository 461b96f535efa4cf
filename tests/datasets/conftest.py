"""Fixtures: one local Census (SOMA + release directory + h5ads over loopback HTTP) per session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.config import Settings, reset_settings
from tests.datasets import fake_census


@pytest.fixture(scope="session")
def census(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fake_census.FakeCensus]:
    pytest.importorskip("tiledbsoma", reason="needs tiledbsoma (pip install cellprompt[census])")
    pytest.importorskip("cellxgene_census", reason="needs cellxgene-census (cellprompt[census])")
    server = fake_census.start(tmp_path_factory.mktemp("census"))
    yield server
    server.close()


@pytest.fixture
def census_settings(census: fake_census.FakeCensus, tmp_path: Path) -> Settings:
    return Settings(census_release_directory_url=census.release_url,
                    census_mirrors_url=census.mirrors_url, datasets_dir=tmp_path / "datasets")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused, like a host with no route."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env_census(census: fake_census.FakeCensus, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Process settings (what the CLI and `resolve` read) pointed at the local Census."""
    datasets_dir = tmp_path / "datasets"
    for key, value in census.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CELLPROMPT_DATASETS_DIR", str(datasets_dir))
    monkeypatch.setenv("COLUMNS", "200")
    reset_settings()
    yield datasets_dir
    reset_settings()
