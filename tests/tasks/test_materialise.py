"""The agent's copy really lacks what is withheld; the truth holds it; the copy is made once."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellprompt.errors import TaskError
from cellprompt.tasks import Task, load_task, materialise


def small_h5ad(path: Path) -> Path:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.random((6, 4)).astype(np.float32),
                       obs=pd.DataFrame({"label": pd.Categorical(list("aabbcc")),
                                         "score": [0.1, np.nan, 0.3, 0.4, 0.5, 0.6]},
                                        index=[f"cell{i}" for i in range(6)]),
                       var=pd.DataFrame({"hv": [True, False, True, False]},
                                        index=["g1", "g2", "g3", "g4"]))
    adata.uns["label_colors"] = np.array(["#000", "#111", "#222"])
    adata.uns["params"] = {"k": np.int64(3), "names": np.array(["x", "y"])}
    adata.obsm["X_emb"] = np.arange(12, dtype=float).reshape(6, 2)
    adata.write_h5ad(path)
    return path


def task_for(dataset: Path, **withhold: list[str]) -> Task:
    return Task(id="t", title="t", dataset=str(dataset), objective="o", withhold=withhold,
                graders=[{"type": "multiple_choice", "config": {"correct_answer": "A"}}])


def test_withheld_parts_are_gone_and_kept_as_truth(tmp_path: Path) -> None:
    src = small_h5ad(tmp_path / "small.h5ad")
    mt = materialise(task_for(src, obs=["label", "score"], var=["hv"], uns=["params"],
                              obsm=["X_emb"]), datasets_dir=tmp_path / "ds")
    copy = ad.read_h5ad(mt.agent_dataset)
    assert list(copy.obs.columns) == [] and list(copy.var.columns) == []
    assert "params" not in copy.uns and "label_colors" not in copy.uns  # palettes go too
    assert "X_emb" not in copy.obsm and copy.shape == (6, 4)
    assert mt.truth["obs"]["label"] == {"cell0": "a", "cell1": "a", "cell2": "b", "cell3": "b",
                                        "cell4": "c", "cell5": "c"}
    assert mt.truth["obs"]["score"]["cell1"] is None  # NaN -> null
    assert mt.truth["var"]["hv"] == {"g1": True, "g2": False, "g3": True, "g4": False}
    assert mt.truth["uns"]["params"] == {"k": 3, "names": ["x", "y"]}
    assert mt.truth["obsm"]["X_emb"]["cell2"] == [4.0, 5.0]
    json.dumps(mt.truth, allow_nan=False)  # strictly JSON
    assert mt.mount_name == "small.h5ad" and mt.mount().source == mt.agent_dataset
    assert src.stat().st_size > 0 and "label" in ad.read_h5ad(src).obs  # source untouched


def test_copy_is_cached_and_invalidated_by_spec_or_source(tmp_path: Path) -> None:
    src = small_h5ad(tmp_path / "small.h5ad")
    ds = tmp_path / "ds"
    first = materialise(task_for(src, obs=["label"]), datasets_dir=ds)
    stamp = first.agent_dataset.stat().st_mtime_ns
    again = materialise(task_for(src, obs=["label"]), datasets_dir=ds)
    assert again.agent_dataset == first.agent_dataset
    assert again.agent_dataset.stat().st_mtime_ns == stamp  # not rewritten
    other = materialise(task_for(src, obs=["score"]), datasets_dir=ds)
    assert other.agent_dataset != first.agent_dataset
    small_h5ad(src)  # rewritten source: new identity, new copy
    assert materialise(task_for(src, obs=["label"]), datasets_dir=ds).agent_dataset != \
        first.agent_dataset


def test_nothing_withheld_means_the_source_itself(tmp_path: Path) -> None:
    src = small_h5ad(tmp_path / "small.h5ad")
    mt = materialise(task_for(src), datasets_dir=tmp_path / "ds")
    assert mt.agent_dataset == src and mt.truth == {}


@pytest.mark.parametrize(("section", "name"), [("obs", "cell_type"), ("uns", "nope"),
                                               ("var", "gene_ids"), ("obsm", "X_umap")])
def test_withholding_what_does_not_exist_is_a_task_error(tmp_path: Path, section: str,
                                                         name: str) -> None:
    src = small_h5ad(tmp_path / "small.h5ad")
    with pytest.raises(TaskError, match=f"withhold.{section} names '{name}'") as info:
        materialise(task_for(src, **{section: [name]}), datasets_dir=tmp_path / "ds")
    assert "\n" not in info.value.message


def test_builtin_cell_typing_task_hides_labels(datasets_dir: Path) -> None:
    mt = materialise(load_task("pbmc68k-coarse-celltypes"))
    copy = ad.read_h5ad(mt.agent_dataset)
    assert not {"bulk_labels", "louvain"} & set(copy.obs.columns)
    assert not {"rank_genes_groups", "louvain", "bulk_labels_colors"} & set(copy.uns)
    assert len(mt.truth["obs"]["bulk_labels"]) == 700
    assert mt.agent_dataset.is_relative_to(datasets_dir)
    assert mt.mount_name == "pbmc68k_reduced.h5ad"
