"""Schemas of what the datasets package returns and writes beside every `.h5ad` (`NAME.json`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

METADATA_SCHEMA_VERSION = 1

Source = Literal["builtin", "census", "local", "generated"]


class DatasetMetadata(BaseModel):
    """The `NAME.json` beside a dataset: where it came from and how to check it is complete."""

    schema_version: int = METADATA_SCHEMA_VERSION
    name: str
    source: Source
    title: str | None = None
    description: str | None = None
    n_obs: int | None = None
    n_vars: int | None = None
    cell_type_key: str | None = None
    # Census provenance (source == "census")
    dataset_id: str | None = None
    dataset_version_id: str | None = None
    collection_id: str | None = None
    collection_name: str | None = None
    collection_doi: str | None = None
    citation: str | None = None
    organism: list[str] = Field(default_factory=list)
    tissue: list[str] = Field(default_factory=list)
    disease: list[str] = Field(default_factory=list)
    assay: list[str] = Field(default_factory=list)
    dataset_total_cell_count: int | None = None
    census_version: str | None = None
    census_build: str | None = None
    source_uri: str | None = None
    # Integrity: a file whose size and sha256 match these is complete and need not be fetched again
    size_bytes: int | None = None
    sha256: str | None = None
    downloaded_at: datetime | None = None
    created_at: datetime | None = None


class ResolvedDataset(BaseModel):
    """A dataset reference turned into a readable file; `name` is its stem under `/data/`."""

    ref: str
    name: str
    path: Path
    source: Source
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The file name to mount it under in a sandbox: `/data/<filename>`."""
        return f"{self.name}.h5ad"


class ColumnSummary(BaseModel):
    """One obs/var column: enough for an agent to know what it can group or filter by."""

    name: str
    dtype: str
    n_categories: int | None = None
    categories: list[str] | None = None  # the first few, for small categoricals


class DatasetSummary(BaseModel):
    """The structure of an `.h5ad`, read from its HDF5 layout without loading `X`."""

    path: Path
    size_bytes: int
    n_obs: int
    n_vars: int
    x_format: str | None  # "dense" | "csr_matrix" | "csc_matrix" | None (no X)
    x_dtype: str | None
    obs: list[ColumnSummary]
    var: list[ColumnSummary]
    uns_keys: list[str]
    obsm_keys: list[str]
    varm_keys: list[str]
    obsp_keys: list[str]
    layers: list[str]
    x_nnz: int | None = None  # stored values of a sparse X
    memory_bytes: int | None = None  # what loading it takes (`footprint`), read from shapes

    def as_text(self, name: str | None = None) -> str:
        """A compact description the agent loop puts in front of the model."""

        def cols(columns: list[ColumnSummary]) -> str:
            parts = []
            for c in columns:
                if c.n_categories is not None:
                    shown = f": {', '.join(c.categories)}" if c.categories else ""
                    parts.append(f"{c.name} (categorical, {c.n_categories} categories{shown})")
                else:
                    parts.append(f"{c.name} ({c.dtype})")
            return "; ".join(parts) or "(none)"

        head = f"/data/{name}.h5ad" if name else str(self.path)
        lines = [
            f"{head}: AnnData with {self.n_obs} cells x {self.n_vars} genes"
            f" (X: {self.x_format or 'absent'}{', ' + self.x_dtype if self.x_dtype else ''})",
            f"obs columns: {cols(self.obs)}",
            f"var columns: {cols(self.var)}",
        ]
        for label, keys in (("layers", self.layers), ("obsm", self.obsm_keys),
                            ("varm", self.varm_keys), ("obsp", self.obsp_keys),
                            ("uns", self.uns_keys)):
            if keys:
                lines.append(f"{label}: {', '.join(keys)}")
        return "\n".join(lines)


class LocalDataset(BaseModel):
    """A dataset already in the datasets folder."""

    name: str
    path: Path
    size_bytes: int
    source: Source
    metadata: dict[str, Any] = Field(default_factory=dict)


class CensusVersion(BaseModel):
    """One Census release; aliases (stable, latest, V#) point at it."""

    name: str
    build: str
    aliases: list[str] = Field(default_factory=list)
    lts: bool = False
    retracted: bool = False
    retraction: dict[str, Any] | None = None
    soma_uri: str | None = None
    h5ads_uri: str | None = None

    @property
    def stable(self) -> bool:
        return "stable" in self.aliases

    @property
    def latest(self) -> bool:
        return "latest" in self.aliases


class CensusDataset(BaseModel):
    """One row of `census_info/datasets`, plus the organisms whose experiment holds its cells."""

    dataset_id: str
    dataset_title: str
    collection_name: str | None = None
    collection_id: str | None = None
    collection_doi: str | None = None
    citation: str | None = None
    dataset_version_id: str | None = None
    dataset_h5ad_path: str | None = None
    dataset_total_cell_count: int
    organism: list[str] = Field(default_factory=list)
    census_version: str


class CensusDatasetDetail(CensusDataset):
    """`show`: every field of one dataset, with the cell metadata summarised."""

    tissue: list[str] = Field(default_factory=list)
    tissue_general: list[str] = Field(default_factory=list)
    disease: list[str] = Field(default_factory=list)
    assay: list[str] = Field(default_factory=list)
    cell_type: list[str] = Field(default_factory=list)
    census_build: str
    source_uri: str | None = None
    source_region: str | None = None
