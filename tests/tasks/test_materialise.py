"""The agent's copy is sealed and lacks what is withheld; the truth holds it; made once."""

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
    # ids are salted hashes: the truth is keyed by them, and the source ids are gone
    assert not {f"cell{i}" for i in range(6)} & set(copy.obs_names)
    assert set(mt.truth["obs"]["label"]) == set(copy.obs_names)
    source = ad.read_h5ad(src)
    by_row = {tuple(np.round(r, 6)): lab for r, lab in zip(source.X, source.obs["label"],
                                                            strict=True)}
    for cell, row in zip(copy.obs_names, copy.X, strict=True):  # a local file: not perturbed
        assert mt.truth["obs"]["label"][cell] == by_row[tuple(np.round(row, 6))]
    assert sorted(v for v in mt.truth["obs"]["score"].values() if v is not None) == \
        [0.1, 0.3, 0.4, 0.5, 0.6]  # NaN -> null
    assert mt.truth["var"]["hv"] == {"g1": True, "g2": False, "g3": True, "g4": False}
    assert mt.truth["uns"]["params"] == {"k": 3, "names": ["x", "y"]}
    assert sorted(mt.truth["obsm"]["X_emb"].values())[2] == [4.0, 5.0]
    json.dumps(mt.truth, allow_nan=False)  # strictly JSON
    assert mt.mount_name == "small.h5ad" and mt.mount().source == mt.agent_dataset
    assert src.stat().st_size > 0 and "label" in ad.read_h5ad(src).obs  # source untouched
    folder = mt.agent_dataset.parent
    for secret in ("truth.json", "salt"):  # host-only, owner-only
        assert (folder / secret).stat().st_mode & 0o077 == 0


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


def test_nothing_withheld_is_still_sealed(tmp_path: Path) -> None:
    src = small_h5ad(tmp_path / "small.h5ad")
    mt = materialise(task_for(src), datasets_dir=tmp_path / "ds")
    assert mt.agent_dataset != src and mt.truth == {}
    assert not {f"cell{i}" for i in range(6)} & set(ad.read_h5ad(mt.agent_dataset).obs_names)


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
    assert len(mt.truth["obs"]["bulk_labels"]) == copy.n_obs
    assert mt.agent_dataset.is_relative_to(datasets_dir)
    assert mt.mount_name == "pbmc68k_reduced.h5ad"
    lineages = mt.truth["computed"]["lineages"]  # recomputed on the sealed cells
    myeloid = sum(v in ("CD14+ Monocyte", "Dendritic") for v in mt.truth["obs"]["bulk_labels"].values())
    assert lineages == {"n_myeloid": myeloid}


def test_public_source_cannot_be_joined_back(datasets_dir: Path) -> None:
    """pbmc68k is public: a perturbed subsample, shuffled, with ids no one else holds."""
    import scanpy as sc

    mt = materialise(load_task("pbmc68k-qc-mito"))
    copy = ad.read_h5ad(mt.agent_dataset)
    source = sc.datasets.pbmc68k_reduced()
    assert copy.n_obs < source.n_obs  # subsampled
    assert not set(copy.obs_names) & set(source.obs_names)  # no id join
    rows = {r.tobytes() for r in np.asarray(source.X)}
    assert not any(r.tobytes() in rows for r in np.asarray(copy.X))  # no exact-value join
    keys = set(zip(source.obs["n_counts"], source.obs["n_genes"], strict=True))
    joined = sum(k in keys for k in zip(copy.obs["n_counts"], copy.obs["n_genes"], strict=True))
    assert joined < copy.n_obs * 0.1  # per-cell metrics are perturbed too


def test_row_order_and_ids_carry_no_time(tmp_path: Path) -> None:
    """krumsiek11 stored time in its ids and row order; a sealed copy keeps neither."""
    from scipy.stats import spearmanr

    n = 200
    time_ = np.arange(n) % 50
    adata = ad.AnnData(np.random.default_rng(1).random((n, 3)).astype(np.float32),
                       obs=pd.DataFrame({"t": time_}, index=[f"{t}-{i // 50}" for i, t in
                                                            enumerate(time_)]))
    adata.write_h5ad(tmp_path / "sim.h5ad")
    mt = materialise(task_for(tmp_path / "sim.h5ad", obs=["t"]), datasets_dir=tmp_path / "ds")
    copy = ad.read_h5ad(mt.agent_dataset)
    truth = [mt.truth["obs"]["t"][c] for c in copy.obs_names]
    assert abs(spearmanr(np.arange(n), truth)[0]) < 0.3  # row order
    digits = [int("".join(ch for ch in c if ch.isdigit())[:6] or 0) for c in copy.obs_names]
    assert abs(spearmanr(digits, truth)[0]) < 0.3  # ids


def test_truth_recipe_runs_on_the_sealed_copy(tmp_path: Path) -> None:
    from cellprompt.tasks.spec import TruthRecipe

    src = small_h5ad(tmp_path / "small.h5ad")
    task = task_for(src, obs=["label"]).model_copy(update={"truth": TruthRecipe(
        recipe="label_counts", params={"column": "label", "key": "n", "fields": {"n_a": "a"}})})
    mt = materialise(task, datasets_dir=tmp_path / "ds")
    assert mt.truth["computed"]["n"] == {"n_a": 2}
    bad = task.model_copy(update={"truth": TruthRecipe(recipe="label_counts",
                                                       params={"column": "nope", "fields": {}})})
    with pytest.raises(TaskError, match="truth recipe 'label_counts' failed"):
        materialise(bad, datasets_dir=tmp_path / "ds2")
