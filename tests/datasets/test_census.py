"""The Census through the real cellxgene_census + tiledbsoma, against a local Census."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from cellprompt.config import Settings
from cellprompt.datasets import (
    DatasetMetadata,
    census_versions,
    download,
    list_census_datasets,
    resolve,
    show,
)
from cellprompt.datasets.transfer import check_disk_space
from cellprompt.errors import CensusError, DatasetError
from tests.datasets.fake_census import DATASETS, FakeCensus

LUNG, BLOOD, BRAIN, KIDNEY = (d["dataset_id"] for d in DATASETS)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source(census: FakeCensus, dataset_id: str) -> Path:
    return census.root / "h5ads" / f"{dataset_id}.h5ad"


def test_versions_hide_retracted(census_settings: Settings) -> None:
    versions = census_versions(settings=census_settings)
    assert [v.name for v in versions] == ["2024-07-01", "2024-01-01"]
    latest, stable = versions
    assert latest.latest and not latest.lts and not latest.stable
    assert stable.stable and stable.lts and stable.aliases == ["V2", "stable"]


def test_versions_with_retracted(census_settings: Settings) -> None:
    versions = {v.name: v for v in census_versions(include_retracted=True,
                                                   settings=census_settings)}
    assert versions["2023-06-01"].retracted and versions["2023-06-01"].aliases == ["V1"]
    assert versions["2023-06-01"].retraction["replaced_by"] == "V2"


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, {LUNG, BLOOD, BRAIN, KIDNEY}),
    ({"organism": "human"}, {LUNG, BLOOD, KIDNEY}),
    ({"organism": "Mus musculus"}, {BRAIN}),
    ({"tissue": "LUNG"}, {LUNG}),
    ({"tissue": "cortex"}, {BRAIN}),  # matches the fine tissue, not only tissue_general
    ({"disease": "covid"}, {LUNG}),
    ({"disease": "normal"}, {LUNG, BLOOD, BRAIN}),
    ({"assay": "10x 3' v3"}, {LUNG, KIDNEY}),
    ({"assay": "10x", "organism": "mouse"}, {BRAIN}),
    ({"tissue": "kidney", "disease": "covid"}, set()),
    ({"tissue": "no such tissue"}, set()),
    ({"min_cells": 15}, {LUNG, BLOOD, BRAIN}),
    ({"max_cells": 15}, {BRAIN, KIDNEY}),
    ({"min_cells": 11, "max_cells": 20}, {BLOOD, BRAIN}),
    ({"search": "atlas"}, {LUNG}),
    ({"search": "precision medicine"}, {KIDNEY}),  # collection name
])
def test_list_filters(census_settings: Settings, filters: dict, expected: set[str]) -> None:
    rows = list_census_datasets(settings=census_settings, **filters)
    assert {r.dataset_id for r in rows} == expected


def test_list_rows(census_settings: Settings) -> None:
    rows = list_census_datasets("latest", limit=2, settings=census_settings)
    assert len(rows) == 2
    assert [r.dataset_title for r in rows] == ["Human blood PBMC", "Human kidney disease"]
    assert rows[0].organism == ["homo_sapiens"] and rows[0].dataset_total_cell_count == 20
    assert rows[0].census_version == "2024-07-01"


def test_list_unknown_organism(census_settings: Settings) -> None:
    with pytest.raises(CensusError, match=r"no organism matching 'zebrafish'.*homo_sapiens"):
        list_census_datasets(organism="zebrafish", settings=census_settings)


@pytest.mark.parametrize("version", ["1999-01-01", "V1"])  # unknown, retracted
def test_unknown_version(census_settings: Settings, version: str) -> None:
    with pytest.raises(CensusError, match=f"unknown or retracted Census version '{version}'"):
        list_census_datasets(version, settings=census_settings)


def test_show(census: FakeCensus, census_settings: Settings) -> None:
    d = show(LUNG, settings=census_settings)
    assert d.dataset_title == "Human lung atlas" and d.collection_doi == "10.1000/lung.2024"
    assert d.organism == ["homo_sapiens"] and d.tissue_general == ["lung"]
    assert d.disease == ["COVID-19", "normal"] and d.assay == ["10x 3' v3"]
    assert d.census_build == "2024-01-01" and d.dataset_total_cell_count == 30
    assert d.source_uri == f"{census.url}/h5ads/{LUNG}.h5ad"


def test_show_unknown_id(census_settings: Settings) -> None:
    with pytest.raises(CensusError, match="unknown Census dataset id 'ffff'"):
        show("ffff", settings=census_settings)


def test_show_rejects_path_like_id(census_settings: Settings) -> None:
    with pytest.raises(DatasetError, match="invalid Census dataset id"):
        show("../../etc/passwd", settings=census_settings)


def test_download(census: FakeCensus, census_settings: Settings, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    resolved = download(BLOOD, to_dir=tmp_path, progress=lambda d, t: seen.append((d, t)),
                        settings=census_settings)
    path = tmp_path / f"{BLOOD}.h5ad"
    assert resolved.path == path and resolved.name == BLOOD
    assert _sha(path) == _sha(_source(census, BLOOD))
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert not (tmp_path / f"{BLOOD}.h5ad.part").exists()
    meta = DatasetMetadata.model_validate_json(path.with_suffix(".json").read_text())
    assert meta.schema_version == 1 and meta.source == "census" and meta.dataset_id == BLOOD
    assert meta.title == "Human blood PBMC" and meta.collection_name == "Blood Census"
    assert meta.collection_doi is None  # empty in the Census: omitted, not ""
    assert meta.organism == ["homo_sapiens"] and meta.tissue == ["blood"]
    assert meta.disease == ["normal"] and meta.assay == ["Smart-seq2"]
    assert meta.dataset_total_cell_count == 20
    assert (meta.census_version, meta.census_build) == ("stable", "2024-01-01")
    assert meta.source_uri == f"{census.url}/h5ads/{BLOOD}.h5ad"
    assert meta.size_bytes == path.stat().st_size and meta.sha256 == _sha(path)
    assert meta.downloaded_at is not None


def test_download_complete_is_reused(census: FakeCensus, census_settings: Settings,
                                     tmp_path: Path) -> None:
    download(KIDNEY, "2024-01-01", tmp_path, settings=census_settings)
    before = len(census.requests)
    seen: list[int] = []
    again = download(KIDNEY, "2024-01-01", tmp_path, lambda d, t: seen.append(d),
                     settings=census_settings)
    assert seen == [] and len(census.requests) == before  # nothing fetched, not even metadata
    assert again.metadata["sha256"] == _sha(_source(census, KIDNEY))


class Interrupt(Exception):
    pass


def test_interrupted_download_resumes(census: FakeCensus, census_settings: Settings,
                                      tmp_path: Path) -> None:
    def stop_after_first_chunk(done: int, total: int | None) -> None:
        if done > 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        download(LUNG, to_dir=tmp_path, progress=stop_after_first_chunk,
                 settings=census_settings)
    final, part = tmp_path / f"{LUNG}.h5ad", tmp_path / f"{LUNG}.h5ad.part"
    assert not final.exists() and not final.with_suffix(".json").exists()
    have = part.stat().st_size
    total = _source(census, LUNG).stat().st_size
    assert 0 < have < total

    seen: list[int] = []
    download(LUNG, to_dir=tmp_path, progress=lambda d, t: seen.append(d),
             settings=census_settings)
    assert (f"/h5ads/{LUNG}.h5ad", f"bytes={have}-") in census.requests
    assert seen[0] == have and seen[-1] == total
    assert _sha(final) == _sha(_source(census, LUNG)) and not part.exists()
    meta = DatasetMetadata.model_validate_json(final.with_suffix(".json").read_text())
    assert meta.sha256 == _sha(final)


def test_corrupt_source_keeps_nothing(census: FakeCensus, census_settings: Settings,
                                      tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{BRAIN}.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    settings = census_settings.model_copy(update={"census_h5ads_uri": mirror.as_uri()})
    out = tmp_path / "out"
    with pytest.raises(CensusError, match=r"is not a readable \.h5ad: nothing was kept"):
        download(BRAIN, to_dir=out, settings=settings)
    assert list(out.iterdir()) == []


def test_disk_space_checked_before_start(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not enough disk space in .*--to"):
        check_disk_space(tmp_path, 1 << 62)


def test_direct_census_uri(census: FakeCensus, tmp_path: Path) -> None:
    """CELLPROMPT_CENSUS_URI opens one SOMA collection with no release directory at all."""
    settings = Settings(census_uri=str(census.root / "soma"),
                        census_h5ads_uri=str(census.root / "h5ads"),
                        census_release_directory_url="http://127.0.0.1:1/release.json")
    rows = list_census_datasets(organism="mouse", settings=settings)
    assert [r.dataset_id for r in rows] == [BRAIN]
    assert rows[0].census_version == "2024-07-01"  # from census_info/summary
    got = download(BRAIN, to_dir=tmp_path, settings=settings)
    assert _sha(got.path) == _sha(_source(census, BRAIN))
    assert got.metadata["source_uri"] == str(census.root / "h5ads" / f"{BRAIN}.h5ad")


def test_resolve_census_ref_downloads_then_reuses_offline(
        env_census: Path, census: FakeCensus, closed_port: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cellprompt.config import reset_settings

    first = resolve(f"census:{BLOOD}@stable")
    assert first.path == env_census / f"{BLOOD}.h5ad" and first.source == "census"
    monkeypatch.setenv("CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL",
                       f"http://127.0.0.1:{closed_port}/release.json")
    reset_settings()
    again = resolve(f"census:{BLOOD}@stable")
    assert again.path == first.path and again.metadata["sha256"] == _sha(first.path)
    assert resolve(f"census:{BLOOD}").path == first.path  # any version will do


@pytest.mark.parametrize("call", ["versions", "list", "download"])
def test_offline_fails_fast(call: str, closed_port: int, tmp_path: Path) -> None:
    settings = Settings(census_release_directory_url=f"http://127.0.0.1:{closed_port}/r.json",
                        census_mirrors_url=f"http://127.0.0.1:{closed_port}/m.json")
    started = time.monotonic()
    with pytest.raises(CensusError) as info:
        if call == "versions":
            census_versions(settings=settings)
        elif call == "list":
            list_census_datasets(settings=settings)
        else:
            download(LUNG, to_dir=tmp_path, settings=settings)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "CELLxGENE Census" in message and "network" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_unanswered_host_times_out(tmp_path: Path) -> None:
    """A host that never answers (packets dropped) fails within the probe timeout."""
    settings = Settings(census_release_directory_url="http://192.0.2.1:81/release.json")
    started = time.monotonic()
    with pytest.raises(CensusError, match=r"cannot reach the CELLxGENE Census at 192\.0\.2\.1"):
        census_versions(settings=settings)
    assert time.monotonic() - started < 6
