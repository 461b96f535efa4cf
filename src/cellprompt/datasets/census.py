"""Browsing and downloading CZ CELLxGENE Census datasets through `tiledbsoma` queries.

The Census holds tens of millions of cells, so nothing here scans it client-side:
every filter becomes a TileDB value filter evaluated by the Census' own tables.

* `census_info/datasets` (one row per dataset) takes the cell-count bounds and, once
  the cell filters have named the matching datasets, `dataset_id in [...]`.
* Each experiment's `obs` takes the tissue/disease/assay filters. A text such as
  "lung" is first matched against the column's enumeration (its categories, a few
  hundred strings), so the query is `tissue in ['lung', 'upper lobe of left lung']`,
  and only `dataset_id` is read back from the cells that match.
* Which organism holds a dataset comes from the `dataset_id` enumeration of each
  experiment, never from reading cells.

Title/collection search is a substring match, which TileDB filters cannot express;
it runs on the dataset table alone (one row per dataset). Connection, timeouts and
versions live in `census_release.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cellprompt.config import Settings, get_settings
from cellprompt.datasets.census_release import (
    DEFAULT_VERSION,
    Release,
    census_versions,
    open_release,
    probe,
    timeouts,
)
from cellprompt.datasets.files import atomic_write_model
from cellprompt.datasets.h5ad import check_h5ad
from cellprompt.datasets.models import (
    CensusDataset,
    CensusDatasetDetail,
    DatasetMetadata,
    ResolvedDataset,
)
from cellprompt.datasets.names import check_dataset_id
from cellprompt.datasets.transfer import Progress, fetch, part_path
from cellprompt.errors import CensusError, DatasetError

__all__ = ["census_versions", "download", "list_census_datasets", "local_census_copy", "show"]

_FACETS: dict[str, tuple[str, ...]] = {
    "tissue": ("tissue_general", "tissue"),
    "disease": ("disease",),
    "assay": ("assay",),
}
_DETAIL_COLUMNS = ("tissue", "tissue_general", "disease", "assay", "cell_type")
_ORGANISM_ALIASES = {"human": "homo_sapiens", "mouse": "mus_musculus"}


# ---------------------------------------------------------------- value filters

def quote_list(values: Iterable[str]) -> str:
    """A TileDB value-filter list literal (`repr` quotes and escapes like the filter parser)."""
    return "[" + ", ".join(repr(str(v)) for v in sorted(set(values))) + "]"


def _experiments(census: Any) -> dict[str, Any]:
    data = census["census_data"]
    return {name: data[name] for name in sorted(data.keys())}


def categories(obs: Any, column: str) -> set[str]:
    """The distinct values of a dictionary-encoded obs column, read from its enumeration.

    A column stored plain (not dictionary-encoded, which the Census never does for these
    columns) falls back to reading just that column.
    """
    try:
        return {str(v) for v in obs.get_enumeration_values([column])[column].to_pylist()}
    except (ValueError, KeyError):
        return _distinct_in_cells(obs, column, None)


def _distinct_in_cells(obs: Any, column: str, value_filter: str | None) -> set[str]:
    """Distinct values of `column` among the cells TileDB selects with `value_filter`."""
    return _distinct_columns(obs, [column], value_filter)[column]


def _distinct_columns(obs: Any, columns: list[str], value_filter: str | None
                      ) -> dict[str, set[str]]:
    """Distinct values of each column among the selected cells, in one filtered read."""
    found: dict[str, set[str]] = {c: set() for c in columns}
    for batch in obs.read(column_names=columns, value_filter=value_filter):
        for column in columns:
            for values in batch.column(column).chunks:
                if hasattr(values, "dictionary"):  # decode only the codes present
                    codes = values.indices.unique().to_pylist()
                    found[column].update(str(values.dictionary[c]) for c in codes
                                         if c is not None)
                else:
                    found[column].update(str(v) for v in values.unique().to_pylist()
                                         if v is not None)
    return found


def _facet_filter(obs: Any, facets: dict[str, str]) -> str | None:
    """A value filter matching cells whose facets contain each text (case-insensitive).

    Returns "" when some facet matches no category at all in this experiment.
    """
    present = set(obs.schema.names)
    clauses = []
    for facet, text in facets.items():
        needle = text.lower()
        ors = []
        for column in _FACETS[facet]:
            if column not in present:
                continue
            hits = [v for v in categories(obs, column) if needle in v.lower()]
            if hits:
                ors.append(f"{column} in {quote_list(hits)}")
        if not ors:
            return ""
        clauses.append("(" + " or ".join(ors) + ")")
    return " and ".join(clauses) or None


def _datasets_filter(min_cells: int | None, max_cells: int | None,
                     ids: Iterable[str] | None = None) -> str | None:
    clauses = []
    if min_cells is not None:
        clauses.append(f"dataset_total_cell_count >= {int(min_cells)}")
    if max_cells is not None:
        clauses.append(f"dataset_total_cell_count <= {int(max_cells)}")
    if ids is not None:
        clauses.append(f"dataset_id in {quote_list(ids)}")
    return " and ".join(clauses) or None


def _read_datasets(census: Any, value_filter: str | None) -> Any:
    table = census["census_info"]["datasets"]
    columns = [c for c in CensusDataset.model_fields if c in table.schema.names]
    return table.read(column_names=columns, value_filter=value_filter).concat().to_pandas()


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
    facets = {k: v for k, v in (("tissue", tissue), ("disease", disease), ("assay", assay)) if v}
    with open_release(settings, version or DEFAULT_VERSION) as release:
        table = _read_datasets(release.census, _datasets_filter(min_cells, max_cells))
        if search:
            needle = search.lower()
            text = (table["dataset_title"].fillna("") + " " + table["collection_name"].fillna("")
                    + " " + table["dataset_id"]).str.lower()
            table = table[text.str.contains(needle, regex=False)]
        experiments = _experiments(release.census)
        members = {name: categories(exp.obs, "dataset_id") for name, exp in experiments.items()}
        scope = _match_organisms(experiments, organism)
        candidates = set(table["dataset_id"])
        if organism or facets:
            allowed: set[str] = set()
            for name, exp in scope.items():
                here = candidates & members[name]
                if not here:
                    continue
                if not facets:
                    allowed |= here
                    continue
                cells = _facet_filter(exp.obs, facets)
                if cells == "":
                    continue
                if here != members[name]:  # narrow the cell query to the candidate datasets
                    cells = f"({cells}) and dataset_id in {quote_list(here)}"
                allowed |= _distinct_in_cells(exp.obs, "dataset_id", cells)
            table = table[table["dataset_id"].isin(allowed)]
    table = table.sort_values(["dataset_title", "dataset_id"])
    if limit is not None:
        table = table.head(limit)
    return [
        CensusDataset(**_row(rec, sorted(n for n, ids in members.items()
                                         if rec["dataset_id"] in ids), release.build))
        for rec in table.to_dict("records")
    ]


def _detail(release: Release, dataset_id: str) -> tuple[dict[str, Any], list[str],
                                                         dict[str, set[str]]]:
    table = _read_datasets(release.census, _datasets_filter(None, None, [dataset_id]))
    if table.empty:
        raise CensusError(f"unknown Census dataset id {dataset_id!r} in Census {release.build}: "
                          "find ids with `cellprompt datasets list`")
    values: dict[str, set[str]] = {c: set() for c in _DETAIL_COLUMNS}
    organisms = []
    for name, exp in _experiments(release.census).items():
        if dataset_id not in categories(exp.obs, "dataset_id"):
            continue
        organisms.append(name)
        wanted = [c for c in _DETAIL_COLUMNS if c in exp.obs.schema.names]
        for column, found in _distinct_columns(exp.obs, wanted,
                                               f"dataset_id == {dataset_id!r}").items():
            values[column] |= found
    return table.iloc[0].to_dict(), organisms, values


def show(dataset_id: str, version: str | None = None, *,
         settings: Settings | None = None) -> CensusDatasetDetail:
    """Every field of one dataset, its cells' tissues/diseases/assays and its source URI."""
    settings = settings or get_settings()
    check_dataset_id(dataset_id)
    with open_release(settings, version or DEFAULT_VERSION) as release:
        record, organisms, values = _detail(release, dataset_id)
    source_uri = _source_uri(release, settings, record)
    return CensusDatasetDetail.model_validate({
        **_row(record, organisms, release.build), "census_build": release.build,
        "source_uri": source_uri, "source_region": release.h5ads_region,
        **{c: sorted(v) for c, v in values.items()},
    })


def _source_uri(release: Release, settings: Settings, record: dict[str, Any]) -> str:
    """Where the source .h5ad lives: the release's h5ads folder joined with the dataset's path."""
    from cellxgene_census._util import _uri_join

    if not release.h5ads_uri:
        if settings.census_uri:
            raise CensusError("CELLPROMPT_CENSUS_URI is set but CELLPROMPT_CENSUS_H5ADS_URI is "
                              "not: set it to the folder holding the source .h5ad files")
        raise CensusError(f"Census {release.build} names no folder of source .h5ad files: set "
                          "CELLPROMPT_CENSUS_H5ADS_URI")
    return _uri_join(release.h5ads_uri.rstrip("/") + "/", str(record["dataset_h5ad_path"]))


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
    """The source `.h5ad` of one dataset plus its metadata JSON; a complete copy is reused.

    Resumes a `.part` left by an interrupted attempt; verifies size (and checksum where
    the source publishes one) before the file gets its final name.
    """
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
        got = fetch(source_uri, dest, region=detail.source_region, progress=progress,
                    timeouts=timeouts(settings))
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
