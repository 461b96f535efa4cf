"""The Census through the real cellxgene_census + tiledbsoma, against a local Census."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tests.datasets.fake_census import DATASETS, FakeCensus, cells

LUNG, BLOOD, BRAIN, KIDNEY = (d["dataset_id"] for d in DATASETS[:4])


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


_ALIASES = {"human": "homo_sapiens", "mouse": "mus_musculus"}


def _expected(filters: dict[str, Any]) -> set[str]:
    """What a filter should return, worked out from the fake Census' own source rows."""
    found = set()
    for d in DATASETS:
        if organism := filters.get("organism"):
            key = organism.lower().replace(" ", "_")
            if _ALIASES.get(key, key) not in d["organism"]:
                continue
        if d["n_cells"] < filters.get("min_cells", 0) or \
                d["n_cells"] > filters.get("max_cells", 1 << 40):
            continue
        text = f"{d['dataset_title']} {d['collection_name']} {d['dataset_id']}".lower()
        if filters.get("search", "").lower() not in text:
            continue
        facets = {"tissue": ("tissue_general", "tissue"), "disease": ("disease",),
                  "assay": ("assay",)}
        wanted = {f: filters[f].lower() for f in facets if f in filters}
        if any(all(any(needle in cell[c].lower() for c in facets[f])
                   for f, needle in wanted.items()) for cell in cells(d)):
            found.add(d["dataset_id"])
    return found


@pytest.mark.parametrize(("filters", "named"), [
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
    ({"tissue": "lung", "disease": "normal", "assay": "10x"}, {LUNG}),
    ({"tissue": "no such tissue"}, set()),
    ({"min_cells": 15}, {LUNG, BLOOD, BRAIN}),
    ({"max_cells": 15}, {BRAIN, KIDNEY}),
    ({"min_cells": 11, "max_cells": 20}, {BLOOD, BRAIN}),
    ({"min_cells": 25, "tissue": "blood"}, set()),
    ({"search": "atlas"}, {LUNG}),
    ({"search": "precision medicine"}, {KIDNEY}),  # collection name
    ({"search": "consortium 3", "organism": "human"}, set()),
    ({"organism": "mouse", "disease": "diabetes", "max_cells": 30}, set()),
])
def test_list_filters(census_settings: Settings, filters: dict, named: set[str]) -> None:
    """Right among 60 datasets: the named four as stated, every one as the source rows say."""
    rows = list_census_datasets(settings=census_settings, **filters)
    got = {r.dataset_id for r in rows}
    assert got == _expected(filters)
    assert got & {LUNG, BLOOD, BRAIN, KIDNEY} == named
    assert len(rows) == len(got)  # no duplicates across experiments


def test_many_datasets_listed(census_settings: Settings) -> None:
    rows = list_census_datasets(settings=census_settings)
    assert len(rows) == len(DATASETS) == 60
    by_id = {r.dataset_id: r for r in rows}
    for d in DATASETS:
        assert by_id[d["dataset_id"]].organism == [d["organism"]]
        assert by_id[d["dataset_id"]].dataset_total_cell_count == d["n_cells"]


class _Reads:
    """Every tiledbsoma DataFrame read: which table, which columns, which filter, how many rows."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import tiledbsoma

        original = tiledbsoma.DataFrame.read
        calls = self.calls

        def read(frame: Any, *args: Any, **kwargs: Any) -> Any:
            call = {"uri": frame.uri, "columns": kwargs.get("column_names"),
                    "filter": kwargs.get("value_filter"), "rows": 0}
            calls.append(call)
            tables = list(original(frame, *args, **kwargs))
            call["rows"] = sum(t.num_rows for t in tables)
            return _Tables(tables)

        monkeypatch.setattr(tiledbsoma.DataFrame, "read", read)

    def of(self, table: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["uri"].rstrip("/").endswith(table)]


class _Tables(list):
    def concat(self) -> Any:
        import pyarrow as pa

        return pa.concat_tables(self)


def test_filters_run_inside_the_census(census_settings: Settings,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Cell filters are TileDB value filters: only matching cells, only `dataset_id`, come back."""
    reads = _Reads()
    reads.install(monkeypatch)
    rows = list_census_datasets(tissue="lung", disease="covid", min_cells=20,
                                settings=census_settings)
    assert {r.dataset_id for r in rows} == _expected(
        {"tissue": "lung", "disease": "covid", "min_cells": 20})
    [datasets] = reads.of("census_info/datasets")
    assert datasets["filter"] == "dataset_total_cell_count >= 20"
    obs_reads = reads.of("obs")
    assert obs_reads, "the cell filter never reached obs"
    matching = sum(1 for d in DATASETS if d["n_cells"] >= 20 for c in cells(d)
                   if "lung" in f"{c['tissue_general']} {c['tissue']}".lower()
                   and "covid" in c["disease"].lower())
    for call in obs_reads:
        assert call["columns"] == ["dataset_id"] and "tissue" in call["filter"]
        assert "disease in" in call["filter"] and "dataset_id in" in call["filter"]
    total_cells = sum(d["n_cells"] for d in DATASETS)
    assert sum(c["rows"] for c in obs_reads) == matching < total_cells / 10


def test_unfiltered_list_reads_no_cells(census_settings: Settings,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Organism membership comes from the dataset_id enumeration, not from the cells."""
    reads = _Reads()
    reads.install(monkeypatch)
    assert len(list_census_datasets(organism="mouse", settings=census_settings)) == len(
        _expected({"organism": "mouse"}))
    assert reads.of("obs") == []


def test_show_reads_one_dataset(census_settings: Settings,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _Reads()
    reads.install(monkeypatch)
    show(KIDNEY, settings=census_settings)
    assert reads.of("census_info/datasets")[0]["filter"] == f"dataset_id in ['{KIDNEY}']"
    [call] = reads.of("obs")  # one read, and not of the experiment without it
    assert call["filter"] == f"dataset_id == '{KIDNEY}'" and call["rows"] == 10
    assert "homo_sapiens" in call["uri"] and "cell_type" in call["columns"]


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
    rows = list_census_datasets(organism="mouse", search="cortex", settings=settings)
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


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("call", ["versions", "list"])
def test_stalled_release_directory_times_out(call: str, silent_port: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """cellxgene_census' own requests get the read timeout too: one line, well on time."""
    settings = Settings(census_release_directory_url=f"http://127.0.0.1:{silent_port}/r.json",
                        census_mirrors_url=f"http://127.0.0.1:{silent_port}/m.json",
                        census_connect_timeout_s=1.0, census_read_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(CensusError, match=r"no answer within 0\.5 s") as info:
        if call == "versions":
            census_versions(settings=settings)
        else:
            list_census_datasets(settings=settings)
    assert time.monotonic() - started < 3 and "\n" not in str(info.value)
