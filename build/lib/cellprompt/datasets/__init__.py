"""Datasets: resolve references (builtin, local `.h5ad`, Census), describe files, browse the Census.

Everything that needs a dataset goes through `resolve`; everything that needs to
say what is in one goes through `describe`, which never loads the matrix.
"""

from cellprompt.datasets.builtin import builtin_names
from cellprompt.datasets.census import census_versions, download, list_census_datasets, show
from cellprompt.datasets.h5ad import describe
from cellprompt.datasets.models import (
    CensusDataset,
    CensusDatasetDetail,
    CensusVersion,
    ColumnSummary,
    DatasetMetadata,
    DatasetSummary,
    LocalDataset,
    ResolvedDataset,
)
from cellprompt.datasets.resolve import list_local, resolve

__all__ = [
    "CensusDataset",
    "CensusDatasetDetail",
    "CensusVersion",
    "ColumnSummary",
    "DatasetMetadata",
    "DatasetSummary",
    "LocalDataset",
    "ResolvedDataset",
    "builtin_names",
    "census_versions",
    "describe",
    "download",
    "list_census_datasets",
    "list_local",
    "resolve",
    "show",
]
