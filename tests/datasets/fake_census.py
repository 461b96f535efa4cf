"""A small local Census, shaped like the real one, served over loopback HTTP.

Layout (same names and columns as the public Census; 60 datasets, obs dictionary-encoded):

    <root>/soma/                       SOMA collection
        census_info/datasets           dataset_id, dataset_title, collection_*, dataset_h5ad_path, ...
        census_info/summary            label/value rows (census_build_date, ...)
        census_data/homo_sapiens       Experiment; obs: dataset_id, tissue_general, tissue,
                                       disease, assay, cell_type, sex, donor_id (categorical)
        census_data/mus_musculus       Experiment
    <root>/h5ads/<dataset_id>.h5ad      source files
    release.json, mirrors.json         served at http://127.0.0.1:PORT/ with the h5ads (Range support)
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

DATASETS: list[dict[str, Any]] = [
    {"dataset_id": "a1b2c3d4-0000-4000-8000-000000000001", "organism": "homo_sapiens",
     "dataset_title": "Human lung atlas", "collection_name": "Lung Cell Atlas",
     "collection_doi": "10.1000/lung.2024", "tissue_general": "lung",
     "tissue": "lung parenchyma", "diseases": ["normal", "COVID-19"], "assay": "10x 3' v3",
     "n_cells": 30, "big": True},
    {"dataset_id": "a1b2c3d4-0000-4000-8000-000000000002", "organism": "homo_sapiens",
     "dataset_title": "Human blood PBMC", "collection_name": "Blood Census",
     "collection_doi": "", "tissue_general": "blood", "tissue": "blood",
     "diseases": ["normal"], "assay": "Smart-seq2", "n_cells": 20, "big": False},
    {"dataset_id": "a1b2c3d4-0000-4000-8000-000000000003", "organism": "mus_musculus",
     "dataset_title": "Mouse brain cortex", "collection_name": "Brain Initiative",
     "collection_doi": "10.1000/brain.2023", "tissue_general": "brain", "tissue": "cortex",
     "diseases": ["normal"], "assay": "10x 3' v2", "n_cells": 15, "big": False},
    {"dataset_id": "a1b2c3d4-0000-4000-8000-000000000004", "organism": "homo_sapiens",
     "dataset_title": "Human kidney disease", "collection_name": "Kidney Precision Medicine",
     "collection_doi": "10.1000/kidney.2022", "tissue_general": "kidney",
     "tissue": "renal medulla", "diseases": ["chronic kidney disease"], "assay": "10x 3' v3",
     "n_cells": 10, "big": False},
]
_TISSUES = [("lung", "upper lobe of left lung"), ("blood", "peripheral blood"),
            ("brain", "cerebellum"), ("liver", "caudate lobe of liver"),
            ("heart", "heart left ventricle"), ("kidney", "kidney"),
            ("intestine", "colonic mucosa"), ("eye", "retina"), ("skin of body", "skin of leg"),
            ("spleen", "spleen")]
_DISEASES = ["normal", "COVID-19", "type 2 diabetes mellitus", "lung adenocarcinoma",
             "Alzheimer disease"]
_ASSAYS = ["10x 3' v3", "10x 3' v2", "10x 5' v1", "Smart-seq2", "Slide-seqV2"]
N_FILLERS = 56  # with the four above: 60 datasets, like a slice of the real Census


def _fillers() -> list[dict[str, Any]]:
    """Many more datasets of realistic variety, generated from one seed.

    They share tissues, diseases and assays with the four named datasets (and with each
    other), so every filter has to pick the right few out of many.
    """
    rng = np.random.default_rng(7)
    rows = []
    for i in range(N_FILLERS):
        general, fine = _TISSUES[int(rng.integers(len(_TISSUES)))]
        diseases = sorted({"normal", *map(str, rng.choice(_DISEASES, size=int(rng.integers(0, 3))))})
        rows.append({
            "dataset_id": f"f0000000-0000-4000-8000-{i:012d}",
            "organism": "mus_musculus" if i % 4 == 3 else "homo_sapiens",
            "dataset_title": f"Study {i:02d} of the {fine}", "collection_name": f"Consortium {i % 7}",
            "collection_doi": f"10.1000/c{i % 7}", "tissue_general": general, "tissue": fine,
            "diseases": diseases, "assay": _ASSAYS[int(rng.integers(len(_ASSAYS)))],
            "n_cells": int(rng.integers(len(diseases), 40)), "big": False,
        })
    return rows


DATASETS += _fillers()
GENES = [f"ENSG{i:011d}" for i in range(12)]


def cells(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The obs rows of one dataset in its experiment (tests derive expectations from these)."""
    rows = []
    for i in range(d["n_cells"]):
        rows.append({
            "dataset_id": d["dataset_id"], "tissue_general": d["tissue_general"],
            "tissue": d["tissue"], "disease": d["diseases"][i % len(d["diseases"])],
            "assay": d["assay"], "cell_type": ["T cell", "B cell", "neuron"][i % 3],
            "sex": ["female", "male"][i % 2], "donor_id": f"{d['dataset_id'][-4:]}-d{i % 3}",
            "is_primary_data": True, "raw_sum": float(100 + i),
        })
    return rows


def _experiment_anndata(datasets: list[dict[str, Any]]) -> ad.AnnData:
    obs = pd.DataFrame([row for d in datasets for row in cells(d)])
    for column in ("dataset_id", "tissue_general", "tissue", "disease", "assay", "cell_type",
                   "sex", "donor_id"):
        obs[column] = obs[column].astype("category")
    obs.index = [f"cell{i}" for i in range(len(obs))]
    var = pd.DataFrame({"feature_id": GENES, "feature_name": [f"G{i}" for i in range(12)]},
                       index=GENES)
    rng = np.random.default_rng(0)
    x = sp.random(len(obs), len(GENES), density=0.3, format="csr", dtype=np.float32,
                  random_state=rng)
    return ad.AnnData(X=x, obs=obs, var=var)


def _source_h5ad(d: dict[str, Any], path: Path) -> None:
    """The source file; the first one is a few MB so downloads span several chunks."""
    rng = np.random.default_rng(1)
    n_cells, n_genes = (1200, 700) if d["big"] else (d["n_cells"], len(GENES))
    obs = pd.DataFrame({"cell_type": pd.Categorical(
        [["T cell", "B cell"][i % 2] for i in range(n_cells)])},
        index=[f"c{i}" for i in range(n_cells)])
    adata = ad.AnnData(X=rng.random((n_cells, n_genes), dtype=np.float32), obs=obs,
                       var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    adata.write_h5ad(path)


def build_soma(root: Path) -> Path:
    import tiledbsoma as soma
    import tiledbsoma.io

    uri = str(root / "soma")
    with soma.Collection.create(uri) as census:
        info = census.add_new_collection("census_info")
        schema = pa.schema([
            ("citation", pa.large_string()), ("collection_id", pa.large_string()),
            ("collection_name", pa.large_string()), ("collection_doi", pa.large_string()),
            ("dataset_id", pa.large_string()), ("dataset_version_id", pa.large_string()),
            ("dataset_title", pa.large_string()), ("dataset_h5ad_path", pa.large_string()),
            ("dataset_total_cell_count", pa.int64()),
        ])
        table = pa.Table.from_pylist([{
            "soma_joinid": i, "citation": f"Cite {d['collection_name']}",
            "collection_id": f"col-{i}", "collection_name": d["collection_name"],
            "collection_doi": d["collection_doi"], "dataset_id": d["dataset_id"],
            "dataset_version_id": f"v-{d['dataset_id']}", "dataset_title": d["dataset_title"],
            "dataset_h5ad_path": f"{d['dataset_id']}.h5ad",
            "dataset_total_cell_count": d["n_cells"],
        } for i, d in enumerate(DATASETS)], schema=pa.schema(
            [("soma_joinid", pa.int64()), *schema]))
        with info.add_new_dataframe("datasets", schema=schema,
                                    index_column_names=["soma_joinid"],
                                    domain=[(0, 1000)]) as df:
            df.write(table)
        summary_schema = pa.schema([("label", pa.large_string()), ("value", pa.large_string())])
        with info.add_new_dataframe("summary", schema=summary_schema,
                                    index_column_names=["soma_joinid"],
                                    domain=[(0, 100)]) as df:
            df.write(pa.Table.from_pylist([
                {"soma_joinid": 0, "label": "census_schema_version", "value": "2.0.1"},
                {"soma_joinid": 1, "label": "census_build_date", "value": "2024-07-01"},
            ], schema=pa.schema([("soma_joinid", pa.int64()), *summary_schema])))
        data = census.add_new_collection("census_data")
        for organism in ("homo_sapiens", "mus_musculus"):
            exp_uri = f"{uri}/census_data/{organism}"
            rows = [d for d in DATASETS if d["organism"] == organism]
            tiledbsoma.io.from_anndata(exp_uri, _experiment_anndata(rows), "RNA")
            data.set(organism, soma.Experiment.open(exp_uri), use_relative_uri=True)
    return Path(uri)


class _Handler(SimpleHTTPRequestHandler):
    """Static files with single Range requests, like the S3/HTTP mirrors the Census uses."""

    log: list[tuple[str, str | None]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.log.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if not match or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start = int(match.group(1))
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


@dataclass
class FakeCensus:
    root: Path
    url: str
    server: ThreadingHTTPServer
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def release_url(self) -> str:
        return f"{self.url}/release.json"

    @property
    def mirrors_url(self) -> str:
        return f"{self.url}/mirrors.json"

    def env(self) -> dict[str, str]:
        return {"CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL": self.release_url,
                "CELLPROMPT_CENSUS_MIRRORS_URL": self.mirrors_url}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _release(build: str, base: str, lts: bool, retracted: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "release_date": None, "release_build": build,
        "soma": {"uri": "unused", "relative_uri": "soma/", "s3_region": None},
        "h5ads": {"uri": f"{base}/h5ads/", "relative_uri": "h5ads/", "s3_region": None},
        "flags": {"lts": lts, "retracted": retracted},
    }
    if retracted:
        entry["retraction"] = {"date": "2023-07-01", "reason": "duplicated cells",
                               "info_url": None, "replaced_by": "V2"}
    return entry


def start(root: Path) -> FakeCensus:
    build_soma(root)
    (root / "h5ads").mkdir()
    for d in DATASETS:
        _source_h5ad(d, root / "h5ads" / f"{d['dataset_id']}.h5ad")
    log: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Handler,), {"log": log})

    def make(*args: Any, **kwargs: Any) -> _Handler:
        return handler(*args, directory=str(root), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), make)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    release = {
        "stable": "2024-01-01", "latest": "2024-07-01", "V2": "2024-01-01", "V1": "2023-06-01",
        "2024-07-01": _release("2024-07-01", base, lts=False),
        "2024-01-01": _release("2024-01-01", base, lts=True),
        "2023-06-01": _release("2023-06-01", base, lts=True, retracted=True),
    }
    (root / "release.json").write_text(json.dumps(release))
    (root / "mirrors.json").write_text(json.dumps({
        "default": "local", "local": {"provider": "file", "base_uri": root.as_uri() + "/",
                                      "region": None, "embeddings_base_uri": ""}}))
    return FakeCensus(root=root, url=base, server=server, requests=log)
