"""The CZ CELLxGENE Census through `cellxgene_census` and `tiledbsoma`.

Every network location comes from settings, so the same code reads the public
Census or a local copy (tests build one):

* `census_release_directory_url` / `census_mirrors_url`: the `release.json` and
  `mirrors.json` cellxgene_census bootstraps from (http/https);
* `census_mirror`: which mirror `open_soma` uses;
* `census_uri` (+ `census_h5ads_uri`): open one SOMA collection directly, no directory.

`cellxgene_census` has no timeouts of its own; a quick reachability probe and a
deadline around directory fetches make "no network" fail in seconds, not minutes.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cellprompt.config import Settings, get_settings
from cellprompt.datasets.files import atomic_write_model
from cellprompt.datasets.h5ad import check_h5ad
from cellprompt.datasets.models import (
    CensusDataset,
    CensusDatasetDetail,
    CensusVersion,
    DatasetMetadata,
    ResolvedDataset,
)
from cellprompt.datasets.names import check_dataset_id
from cellprompt.datasets.transfer import Progress, fetch, part_path
from cellprompt.errors import CensusError, DatasetError

T = TypeVar("T")

DEFAULT_VERSION = "stable"
PROBE_TIMEOUT_S = 3.0
DIRECTORY_TIMEOUT_S = 20.0
# Bounded buffers (the cellxgene_census default is 1 GiB per read) and S3 timeouts.
_TILEDB_CONFIG: dict[str, Any] = {
    "py.init_buffer_bytes": 64 << 20,
    "soma.init_buffer_bytes": 64 << 20,
    "vfs.s3.connect_timeout_ms": 5000,
    "vfs.s3.request_timeout_ms": 60000,
    "vfs.s3.connect_max_tries": 2,
}
_FACETS: dict[str, tuple[str, ...]] = {
    "tissue": ("tissue_general", "tissue"),
    "disease": ("disease",),
    "assay": ("assay",),
}
_DETAIL_COLUMNS = ("tissue", "tissue_general", "disease", "assay", "cell_type")
_ORGANISM_ALIASES = {"human": "homo_sapiens", "mouse": "mus_musculus"}


# ---------------------------------------------------------------- configuration and errors

def _offline(where: str, reason: str) -> CensusError:
    return CensusError(
        f"cannot reach the CELLxGENE Census at {where} ({reason}): check the network "
        "connection, or point CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL / CELLPROMPT_CENSUS_URI "
        "at a reachable copy"
    )


def _host_port(url: str) -> tuple[str, int] | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.hostname:
        return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if parsed.scheme == "s3":
        return "s3.amazonaws.com", 443
    return None


def _with_deadline(fn: Callable[[], T], seconds: float, what: str, where: str) -> T:
    """Run `fn` in a daemon thread; give up after `seconds` (DNS and requests have no timeout)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"census-{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _offline(where, f"no answer to {what} within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail in `timeout` seconds when the host behind `url` cannot be reached at all."""
    target = _host_port(url)
    if target is None:
        return

    def connect() -> None:
        with socket.create_connection(target, timeout=timeout):
            pass

    try:
        _with_deadline(connect, timeout + 0.5, "a connection", target[0])
    except OSError as exc:
        raise _offline(f"{target[0]}:{target[1]}", exc.strerror or type(exc).__name__) from None


@contextmanager
def _configured(settings: Settings) -> Iterator[None]:
    """Point cellxgene_census at the configured directory/mirrors and keep its logger quiet."""
    import cellxgene_census._release_directory as rd

    saved = (rd.CELL_CENSUS_RELEASE_DIRECTORY_URL, rd.CELL_CENSUS_MIRRORS_DIRECTORY_URL)
    logger = logging.getLogger("cellxgene_census")
    saved_level = logger.level
    if settings.census_release_directory_url:
        rd.CELL_CENSUS_RELEASE_DIRECTORY_URL = settings.census_release_directory_url
    if settings.census_mirrors_url:
        rd.CELL_CENSUS_MIRRORS_DIRECTORY_URL = settings.census_mirrors_url
    logger.setLevel(logging.ERROR)  # it logs "stable is currently ..." to stderr on every open
    try:
        yield
    except CensusError:
        raise
    except DatasetError:
        raise
    except Exception as exc:
        raise _translate(exc, rd.CELL_CENSUS_RELEASE_DIRECTORY_URL) from None
    finally:
        rd.CELL_CENSUS_RELEASE_DIRECTORY_URL, rd.CELL_CENSUS_MIRRORS_DIRECTORY_URL = saved
        logger.setLevel(saved_level)


def _translate(exc: Exception, directory_url: str) -> CensusError:
    import requests

    host = urllib.parse.urlparse(directory_url).netloc or directory_url
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, requests.HTTPError):
        return CensusError(f"the CELLxGENE Census release directory at {directory_url} answered "
                           f"{first}: check CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL")
    if isinstance(exc, requests.RequestException | httpx.TransportError | ConnectionError):
        return _offline(host, first)
    return CensusError(f"CELLxGENE Census error: {first}")


def _directory_url(settings: Settings) -> str:
    import cellxgene_census._release_directory as rd

    return settings.census_release_directory_url or rd.CELL_CENSUS_RELEASE_DIRECTORY_URL


def _directory(settings: Settings, *, retracted: bool | None) -> dict[str, Any]:
    import cellxgene_census

    url = _directory_url(settings)
    probe(url)
    return _with_deadline(
        lambda: cellxgene_census.get_census_version_directory(retracted=retracted),
        DIRECTORY_TIMEOUT_S, "the release directory request", url)


# ---------------------------------------------------------------- versions

def census_versions(include_retracted: bool = False, *,
                    settings: Settings | None = None) -> list[CensusVersion]:
    """Releases newest first; aliases (stable, latest, V#) are folded into their release."""
    settings = settings or get_settings()
    if settings.census_uri:
        raise CensusError("CELLPROMPT_CENSUS_URI opens one Census directly, so there are no "
                          "versions to list: unset it to use the release directory")
    with _configured(settings):
        directory = _directory(settings, retracted=None if include_retracted else False)
    by_build: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, desc in directory.items():
        by_build.setdefault(desc["release_build"], []).append((name, desc))
    versions = []
    for build, entries in by_build.items():
        names = [n for n, _ in entries]
        name = build if build in names else sorted(names)[-1]
        desc = dict(entries[0][1])
        flags = desc.get("flags", {})
        versions.append(CensusVersion(
            name=name, build=build, aliases=sorted(n for n in names if n != name),
            lts=bool(flags.get("lts", False)), retracted=bool(flags.get("retracted", False)),
            retraction=desc.get("retraction"),
            soma_uri=desc.get("soma", {}).get("uri") or desc.get("soma", {}).get("relative_uri"),
            h5ads_uri=desc.get("h5ads", {}).get("uri"),
        ))
    return sorted(versions, key=lambda v: v.build, reverse=True)


# ---------------------------------------------------------------- opening one release

@contextmanager
def _census(settings: Settings, version: str) -> Iterator[tuple[Any, str]]:
    """The open SOMA collection and the concrete build it is."""
    import cellxgene_census

    with _configured(settings):
        if settings.census_uri:
            probe(settings.census_uri)
            census = cellxgene_census.open_soma(uri=settings.census_uri,
                                                tiledb_config=_TILEDB_CONFIG)
            build = None
        else:
            directory = _directory(settings, retracted=False)
            if version not in directory:
                raise CensusError(f"unknown or retracted Census version {version!r}: list "
                                  "versions with `cellprompt datasets versions`")
            build = directory[version]["release_build"]
            probe(settings.census_mirrors_url or _directory_url(settings))
            census = cellxgene_census.open_soma(census_version=version,
                                                mirror=settings.census_mirror,
                                                tiledb_config=_TILEDB_CONFIG)
        with census:
            yield census, build or _summary_build(census) or version


def _summary_build(census: Any) -> str | None:
    info = census["census_info"]
    if "summary" not in info:
        return None
    df = info["summary"].read().concat().to_pandas()
    rows = df.loc[df["label"] == "census_build_date", "value"]
    return str(rows.iloc[0]) if len(rows) else None


def _experiments(census: Any) -> dict[str, Any]:
    data = census["census_data"]
    return {name: data[name] for name in sorted(data.keys())}


def _distinct(obs: Any, column: str, value_filter: str | None = None) -> set[str]:
    """Distinct values of one obs column: the enumeration when unfiltered, else a batched scan."""
    if value_filter is None:
        try:
            return {str(v) for v in obs.get_enumeration_values([column])[column].to_pylist()}
        except (ValueError, KeyError):
            pass  # not dictionary-encoded: scan it
    found: set[str] = set()
    for batch in obs.read(column_names=[column], value_filter=value_filter):
        found.update(str(v) for v in batch.column(column).unique().to_pylist())
    return found


def _columns(obs: Any) -> set[str]:
    return set(obs.schema.names)


def _quote(values: Sequence[str]) -> str:
    return "[" + ", ".join(repr(v) for v in sorted(values)) + "]"


def _facet_filter(obs: Any, facets: dict[str, str]) -> str | None:
    """A TileDB value filter matching cells whose facets contain each text (case-insensitive).

    Returns "" when some facet matches no value at all in this experiment.
    """
    present = _columns(obs)
    clauses = []
    for facet, text in facets.items():
        needle = text.lower()
        ors = []
        for column in _FACETS[facet]:
            if column not in present:
                continue
            hits = [v for v in _distinct(obs, column) if needle in v.lower()]
            if hits:
                ors.append(f"{column} in {_quote(hits)}")
        if not ors:
            return ""
        clauses.append("(" + " or ".join(ors) + ")")
    return " and ".join(clauses) or None


def _match_organisms(experiments: dict[str, Any], organism: str | None) -> dict[str, Any]:
    if organism is None:
        return experiments
    key = organism.strip().lower().replace(" ", "_")
    key = _ORGANISM_ALIASES.get(key, key)
    chosen = {name: exp for name, exp in experiments.items() if key in name}
    if not chosen:
        raise CensusError(f"no organism matching {organism!r} in this Census: choose one of "
                          f"{', '.join(experiments)}")
    return chosen


def _row(record: dict[str, Any], organisms: list[str], build: str) -> dict[str, Any]:
    fields = {k: record.get(k) for k in CensusDataset.model_fields if k in record}
    fields["dataset_total_cell_count"] = int(record.get("dataset_total_cell_count") or 0)
    return {**fields, "organism": organisms, "census_version": build}


# ---------------------------------------------------------------- list / show

def list_census_datasets(
    version: str | None = None, *, organism: str | None = None, tissue: str | None = None,
    disease: str | None = None, assay: str | None = None, min_cells: int | None = None,
    max_cells: int | None = None, search: str | None = None, limit: int | None = None,
    settings: Settings | None = None,
) -> list[CensusDataset]:
    """Datasets of one release, filtered; tissue/disease/assay match cell metadata substrings."""
    settings = settings or get_settings()
    with _census(settings, version or DEFAULT_VERSION) as (census, build):
        table = census["census_info"]["datasets"].read().concat().to_pandas()
        experiments = _experiments(census)
        members = {name: _distinct(exp.obs, "dataset_id") for name, exp in experiments.items()}
        scope = _match_organisms(experiments, organism)
        facets = {k: v for k, v in (("tissue", tissue), ("disease", disease),
                                    ("assay", assay)) if v}
        allowed: set[str] | None = None
        if organism or facets:
            allowed = set()
            for name, exp in scope.items():
                if not facets:
                    allowed |= members[name]
                    continue
                value_filter = _facet_filter(exp.obs, facets)
                if value_filter:
                    allowed |= _distinct(exp.obs, "dataset_id", value_filter)
    if allowed is not None:
        table = table[table["dataset_id"].isin(allowed)]
    counts = table["dataset_total_cell_count"]
    if min_cells is not None:
        table = table[counts >= min_cells]
    if max_cells is not None:
        table = table[table["dataset_total_cell_count"] <= max_cells]
    if search:
        needle = search.lower()
        text = (table["dataset_title"].fillna("") + " " + table["collection_name"].fillna("")
                + " " + table["dataset_id"]).str.lower()
        table = table[text.str.contains(needle, regex=False)]
    table = table.sort_values(["dataset_title", "dataset_id"])
    if limit is not None:
        table = table.head(limit)
    return [
        CensusDataset(**_row(rec, sorted(n for n, ids in members.items()
                                         if rec["dataset_id"] in ids), build))
        for rec in table.to_dict("records")
    ]


def show(dataset_id: str, version: str | None = None, *,
         settings: Settings | None = None) -> CensusDatasetDetail:
    """Every field of one dataset, its cells' tissues/diseases/assays and its source URI."""
    settings = settings or get_settings()
    check_dataset_id(dataset_id)
    version = version or DEFAULT_VERSION
    with _census(settings, version) as (census, build):
        table = census["census_info"]["datasets"].read(
            value_filter=f"dataset_id == {dataset_id!r}").concat().to_pandas()
        if table.empty:
            raise CensusError(f"unknown Census dataset id {dataset_id!r} in Census {build}: "
                              "find ids with `cellprompt datasets list`")
        record = table.iloc[0].to_dict()
        values: dict[str, set[str]] = {c: set() for c in _DETAIL_COLUMNS}
        organisms = []
        for name, exp in _experiments(census).items():
            wanted = [c for c in _DETAIL_COLUMNS if c in _columns(exp.obs)]
            found = False
            for batch in exp.obs.read(column_names=wanted,
                                      value_filter=f"dataset_id == {dataset_id!r}"):
                if batch.num_rows:
                    found = True
                for column in wanted:
                    values[column].update(str(v) for v in batch.column(column).unique()
                                          .to_pylist())
            if found:
                organisms.append(name)
        source_uri, region = _source_uri(settings, dataset_id, version, record)
    return CensusDatasetDetail(
        **_row(record, organisms, build), census_build=build, source_uri=source_uri,
        source_region=region,
        **{c: sorted(v) for c, v in values.items()},
    )


def _source_uri(settings: Settings, dataset_id: str, version: str,
                record: dict[str, Any]) -> tuple[str, str | None]:
    """Where the source .h5ad lives: the release's h5ads locator (or CELLPROMPT_CENSUS_H5ADS_URI)."""
    from cellxgene_census._util import _uri_join

    if settings.census_h5ads_uri:
        base = settings.census_h5ads_uri.rstrip("/") + "/"
        return _uri_join(base, str(record["dataset_h5ad_path"])), None
    if settings.census_uri:
        raise CensusError("CELLPROMPT_CENSUS_URI is set but CELLPROMPT_CENSUS_H5ADS_URI is not: "
                          "set it to the folder holding the source .h5ad files")
    import cellxgene_census

    locator = cellxgene_census.get_source_h5ad_uri(dataset_id, census_version=version)
    return locator["uri"], locator.get("s3_region")


# ---------------------------------------------------------------- download

def _already_complete(path: Path, version: str | None) -> DatasetMetadata | None:
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = DatasetMetadata.model_validate_json(meta_path.read_text())
    except ValueError:
        return None
    if not meta.sha256 or meta.size_bytes != path.stat().st_size:
        return None
    if version is not None and version not in (meta.census_version, meta.census_build):
        return None
    return meta


def local_census_copy(dataset_id: str, version: str | None, datasets_dir: Path
                      ) -> DatasetMetadata | None:
    """The metadata of a complete earlier download, so `census:` refs work offline."""
    return _already_complete(datasets_dir / f"{dataset_id}.h5ad", version)


def download(dataset_id: str, version: str | None = None, to_dir: Path | None = None,
             progress: Progress | None = None, *,
             settings: Settings | None = None) -> ResolvedDataset:
    """The source `.h5ad` of one dataset plus its metadata JSON; a complete copy is reused."""
    settings = settings or get_settings()
    check_dataset_id(dataset_id)
    to_dir = Path(to_dir) if to_dir is not None else settings.datasets_dir
    dest = to_dir / f"{dataset_id}.h5ad"
    ref = f"census:{dataset_id}" + (f"@{version}" if version else "")
    meta = _already_complete(dest, version)
    if meta is None:
        version = version or DEFAULT_VERSION
        detail = show(dataset_id, version, settings=settings)
        source_uri = str(detail.source_uri)
        probe(source_uri)
        try:
            got = fetch(source_uri, dest, region=detail.source_region, progress=progress)
        except httpx.HTTPStatusError as exc:
            raise CensusError(f"the Census source file {source_uri} could not be downloaded "
                              f"(HTTP {exc.response.status_code}): try again later") from None
        except (OSError, httpx.TransportError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _offline(source_uri, reason) from None
        try:
            check_h5ad(dest)
        except DatasetError:
            dest.unlink(missing_ok=True)
            part_path(dest).unlink(missing_ok=True)
            raise CensusError(f"the Census file {source_uri} is not a readable .h5ad: "
                              "nothing was kept; try again later") from None
        meta = DatasetMetadata(
            name=dataset_id, source="census", title=detail.dataset_title,
            dataset_id=dataset_id, dataset_version_id=detail.dataset_version_id,
            collection_id=detail.collection_id, collection_name=detail.collection_name,
            collection_doi=detail.collection_doi or None, citation=detail.citation or None,
            organism=detail.organism, tissue=detail.tissue, disease=detail.disease,
            assay=detail.assay, dataset_total_cell_count=detail.dataset_total_cell_count,
            n_obs=detail.dataset_total_cell_count, census_version=version,
            census_build=detail.census_build, source_uri=source_uri,
            size_bytes=got.size, sha256=got.sha256, downloaded_at=datetime.now(timezone.utc),
        )
        atomic_write_model(dest.with_suffix(".json"), meta)
    return ResolvedDataset(ref=ref, name=dataset_id, path=dest, source="census",
                           metadata=meta.model_dump(mode="json", exclude_none=True))

