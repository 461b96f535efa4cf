"""The truths the audit found method-specific or too lax, fixed (no sandbox: host-side answers).

Each test is one finding of issue 12: a valid method that used to fail now passes, a wrong or
degenerate answer that used to pass now fails. Answers are computed on the sealed agent copy
exactly as agent code would, then graded through the task.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellprompt.tasks import builtin_tasks, grade_task, load_task, materialise


def _copy(task_id: str) -> tuple[Any, Any, Any]:
    task = load_task(task_id)
    mt = materialise(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return task, mt, ad.read_h5ad(mt.agent_dataset)


def _passes(task: Any, mt: Any, answer: dict[str, Any], workspace: Path | None = None) -> bool:
    return all(g.passed for g in grade_task(task, answer, truth=mt.truth, workspace=workspace))


def test_pca_on_all_genes_passes_and_the_hvg_default_fails(datasets_dir: Path) -> None:
    from sklearn.decomposition import PCA

    task, mt, adata = _copy("pbmc68k-pca-variance")
    vr = PCA(50, svd_solver="full").fit(np.asarray(adata.X)).explained_variance_ratio_
    assert _passes(task, mt, {"pc1_variance_ratio": vr[0],
                              "top10_cumulative_variance_ratio": vr[:10].sum()})
    hvg = np.asarray(adata[:, adata.var["highly_variable"]].X)
    vr = PCA(50, svd_solver="full").fit(hvg).explained_variance_ratio_
    assert not _passes(task, mt, {"pc1_variance_ratio": vr[0],
                                  "top10_cumulative_variance_ratio": vr[:10].sum()})


def _wilcoxon(adata, reference: str) -> tuple[list[str], float]:
    from scipy.stats import mannwhitneyu
    from statsmodels.stats.multitest import multipletests

    x = adata.raw.X.toarray()
    lab = adata.obs["bulk_labels"].to_numpy()
    a = x[lab == "CD14+ Monocyte"]
    b = x[lab == reference] if reference != "rest" else x[lab != "CD14+ Monocyte"]
    p = np.nan_to_num(mannwhitneyu(a, b, axis=0, method="asymptotic",
                                   use_continuity=False).pvalue, nan=1.0)
    sig = [g for g, q in zip(adata.raw.var_names, multipletests(p, method="fdr_bh")[1],
                             strict=True) if q < 0.05]
    j = list(adata.raw.var_names).index("FCGR3A")
    return sig, float(np.log2(np.expm1(a[:, j]).mean() / np.expm1(b[:, j]).mean()))


def test_tie_corrected_wilcoxon_passes_and_versus_rest_fails(datasets_dir: Path) -> None:
    task, mt, adata = _copy("pbmc68k-de-mono-vs-dc")
    sig, fc = _wilcoxon(adata, "Dendritic")
    assert _passes(task, mt, {"n_significant": len(sig), "significant_genes": sig,
                              "fcgr3a_log2fc": fc})
    rest, _ = _wilcoxon(adata, "rest")
    # even with the right count and fold change, the versus-rest gene set fails
    assert not _passes(task, mt, {"n_significant": len(sig), "significant_genes": rest,
                                  "fcgr3a_log2fc": fc})
    assert not _passes(task, mt, {"n_significant": len(sig), "significant_genes": sig,
                                  "fcgr3a_log2fc": 4.5})  # scanpy's expm1-of-mean-log value


def test_cell_typing_that_never_calls_small_lineages_fails(datasets_dir: Path,
                                                           tmp_path: Path) -> None:
    task, mt, _ = _copy("pbmc68k-coarse-celltypes")
    grader = task.graders[0]["config"]
    truth = {c: grader["truth_map"][v] for c, v in mt.truth["obs"]["bulk_labels"].items()}
    n_myeloid = sum(v == "Myeloid" for v in truth.values())
    lazy = {c: {"NK": "T", "Progenitor": "Myeloid"}.get(v, v) for c, v in truth.items()}
    accuracy = np.mean([lazy[c] == truth[c] for c in truth])
    assert accuracy > 0.85  # the old accuracy bar passed this answer
    pd.Series(lazy, name="cell_type").rename_axis("cell_id").to_csv(tmp_path / "cell_types.csv")
    [labels, _] = grade_task(task, {"n_myeloid": n_myeloid}, truth=mt.truth, workspace=tmp_path)
    assert not labels.passed and labels.metrics["min_recall"] == 0.0
    pd.Series(truth, name="cell_type").rename_axis("cell_id").to_csv(tmp_path / "cell_types.csv")
    assert _passes(task, mt, {"n_myeloid": n_myeloid}, tmp_path)


def _dpt(adata, k: int, method: str) -> pd.Series:
    import scanpy as sc

    a = adata.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    root = int(np.argmax(a[:, list(a.uns["progenitor_markers"])].X.toarray().mean(1)))
    sc.pp.pca(a, n_comps=20)
    extra = {"transformer": "sklearn"} if method == "gauss" else {}
    sc.pp.neighbors(a, n_neighbors=k, method=method, **extra)
    sc.tl.diffmap(a)
    a.uns["iroot"] = root
    sc.tl.dpt(a)
    return a.obs["dpt_pseudotime"], a, root


def test_pseudotime_per_branch_passes_dpt_k30_and_fails_distance_to_root(
        datasets_dir: Path, tmp_path: Path) -> None:
    task, mt, adata = _copy("trajectory-sim-pseudotime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, method in ((30, "gauss"), (30, "umap"), (10, "umap")):
            pt, _, _ = _dpt(adata, k, method)
            pt.rename("pseudotime").rename_axis("cell_id").to_csv(tmp_path / "pseudotime.csv")
            assert _passes(task, mt, {"root_cell": "x"}, tmp_path), (k, method)
        _, lognorm, root = _dpt(adata, 15, "umap")
    x = lognorm.X.toarray()
    dist = pd.Series(np.linalg.norm(x - x[root], axis=1), index=lognorm.obs_names)
    dist.rename("pseudotime").rename_axis("cell_id").to_csv(tmp_path / "pseudotime.csv")
    assert not _passes(task, mt, {"root_cell": "x"}, tmp_path)
    order = pd.Series(np.arange(adata.n_obs), index=adata.obs_names)  # row order: shuffled
    order.rename("pseudotime").rename_axis("cell_id").to_csv(tmp_path / "pseudotime.csv")
    assert not _passes(task, mt, {"root_cell": "x"}, tmp_path)


def _rank(adata, method: str) -> pd.DataFrame:
    import scanpy as sc

    a = adata.copy()
    kw = {"max_iter": 1000} if method == "logreg" else {"groups": ["CD19+ B"], "reference": "rest"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(a, "bulk_labels", method=method, use_raw=True, **kw)
    return a


def test_markers_consensus_logreg_passes_down_regulated_fails(datasets_dir: Path) -> None:
    import scanpy as sc

    task, mt, adata = _copy("pbmc68k-b-cell-markers")
    wil = sc.get.rank_genes_groups_df(_rank(adata, "wilcoxon"), group="CD19+ B")
    [ref] = grade_task(task, {"top_marker_genes": wil["names"][:10].tolist()}, truth=mt.truth,
                       workspace=None)
    assert ref.passed and ref.score == 1.0  # one right answer: the reference reaches 1.0
    logreg = _rank(adata, "logreg").uns["rank_genes_groups"]["names"]["CD19+ B"][:10]
    assert _passes(task, mt, {"top_marker_genes": [str(g) for g in logreg]})
    by_abs = wil.reindex(wil["scores"].abs().sort_values(ascending=False).index)["names"][:10]
    [trap] = grade_task(task, {"top_marker_genes": by_abs.tolist()}, truth=mt.truth,
                        workspace=None)
    assert not trap.passed and trap.metrics["not_allowed"]


def test_every_gene_fails_a_marker_grader_without_k(datasets_dir: Path) -> None:
    """scBench configs carry no k: it defaults to the truth list's length, not the answer's."""
    from cellprompt.grading import grade

    _, mt, adata = _copy("pbmc68k-hvg")
    spec = {"type": "marker_gene_precision_recall",
            "config": {"truth_path": ["computed", "hvg"], "thresholds": {"recall_at_k": 0.5}}}
    everything = sorted(adata.var_names)
    assert not grade(spec, {"top_marker_genes": everything}, mt.truth).passed
    assert grade(spec, {"top_marker_genes": mt.truth["computed"]["hvg"]}, mt.truth).passed


def test_rescoring_cell_cycle_with_tirosh_genes_passes(datasets_dir: Path,
                                                       tmp_path: Path) -> None:
    import scanpy as sc

    task, mt, adata = _copy("cellcycle-sim-phases")
    genes = adata.uns["cell_cycle_genes"]
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.tl.score_genes_cell_cycle(adata, s_genes=list(genes["S"]), g2m_genes=list(genes["G2M"]))
    adata.obs["phase"].rename_axis("cell_id").to_csv(tmp_path / "phases.csv")
    counts = adata.obs["phase"].value_counts()
    assert _passes(task, mt, {"n_S": int(counts["S"]), "n_G2M": int(counts["G2M"])}, tmp_path)


def test_no_knowledge_only_question_in_the_default_suite() -> None:
    ids = {t.id for t in builtin_tasks()}
    assert "krumsiek11-fate-factor" not in ids
    every = builtin_tasks(include_knowledge_only=True)
    assert any(t.metadata.knowledge_only for t in every)
    assert load_task("krumsiek11-fate-factor").metadata.knowledge_only


@pytest.mark.parametrize("task", builtin_tasks(), ids=lambda t: t.id)
def test_every_task_carries_a_validity_kit(task) -> None:
    alternatives = [v for v in task.variants if v.expect == "pass"]
    wrong = [v for v in task.variants if v.expect == "fail"]
    assert task.reference is not None and len(alternatives) >= 2 and len(wrong) >= 2
    assert any(v.name.startswith("degenerate") for v in wrong)
    assert any(v.name.startswith("trap") for v in wrong)
    assert all(v.why for v in task.variants)
