"""Generated datasets: deterministic, small and fast, addressed as refs, truth recoverable.

Recoverability is checked the way an analyst would work (log-normalise, PCA, cluster;
mitochondrial share; library-size normalisation), and a trivial analysis is checked to
fail, so the truth is neither unreachable nor given away.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cellprompt.datasets import resolve
from cellprompt.datasets.generate import generate, generator_names, parse_ref, with_seed
from cellprompt.errors import DatasetError

REFS = {name: f"gen:{name}?seed=7" for name in ("celltypes", "doublets", "trajectory", "batches",
                                                "conditions", "ambient")}


def _dense(x: object) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)  # type: ignore[union-attr]


def _lognorm(x: np.ndarray) -> np.ndarray:
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4)


def test_every_generator_is_covered() -> None:
    assert sorted(REFS) == generator_names()


@pytest.mark.parametrize("name", sorted(REFS))
def test_deterministic_small_and_fast(name: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    a = generate(REFS[name])
    elapsed = time.monotonic() - t0
    b = generate(REFS[name])
    other = generate(with_seed(REFS[name], 8))
    assert elapsed < 10, f"{name} took {elapsed:.1f} s"
    assert (a.adata.X != b.adata.X).nnz == 0
    assert json.dumps(a.truth, default=str) == json.dumps(b.truth, default=str)
    assert a.adata.X.shape != other.adata.X.shape or (a.adata.X != other.adata.X).nnz > 0
    x = a.adata.X
    assert np.all(np.mod(x.data, 1) == 0), "counts are integers"
    path = tmp_path / "x.h5ad"
    a.adata.write_h5ad(path)
    assert path.stat().st_size < 50 * 1024 * 1024
    for col in a.truth_keys.get("obs", []):
        assert col in a.adata.obs
    # neutral: no word of how it was made, nothing of the truth-bearing parameters
    assert not any(w in a.description.lower() for w in ("generat", "simulat", "doublet", "rate",
                                                          "fold", "contamin", "damaged"))


def test_ref_resolves_cached_with_neutral_name(tmp_path: Path) -> None:
    ref = "gen:doublets?seed=3&cells=600&name=channel"
    first = resolve(ref, datasets_dir=tmp_path)
    assert first.source == "generated" and first.name == "channel"
    assert "doublet" not in first.filename and "doublet" not in first.metadata["description"]
    mtime = first.path.stat().st_mtime_ns
    again = resolve(ref, datasets_dir=tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime
    fresh = resolve(with_seed(ref, 4), datasets_dir=tmp_path)
    assert fresh.path != first.path and fresh.name == "channel"


@pytest.mark.parametrize("bad", ["gen:nope?seed=1", "gen:celltypes?seed=x",
                                 "gen:celltypes?colour=red", "gen:celltypes?cells=10",
                                 "gen:celltypes?name=../etc"])
def test_bad_refs_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(DatasetError):
        parse_ref(bad)


def test_cell_types_recoverable_by_clustering_not_by_raw_depth() -> None:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    g = generate("gen:celltypes?seed=11&cells=1200&genes=800&rare=0&depth_ratio=4")
    x = _dense(g.adata.X)
    truth = g.adata.obs["cell_type"].astype(str).to_numpy()
    k = len(g.truth["types"])
    good = KMeans(k, n_init=10, random_state=0).fit_predict(
        PCA(15, random_state=0).fit_transform(_lognorm(x)))
    bad = KMeans(k, n_init=10, random_state=0).fit_predict(
        PCA(15, random_state=0).fit_transform(np.log1p(x)))
    assert adjusted_rand_score(truth, good) > 0.9
    assert adjusted_rand_score(truth, bad) < adjusted_rand_score(truth, good) - 0.2


def test_markers_are_up_in_their_population() -> None:
    g = generate("gen:celltypes?seed=12&cells=1000&genes=800")
    x = _lognorm(_dense(g.adata.X))
    types = g.adata.obs["cell_type"].astype(str).to_numpy()
    names = list(g.adata.var_names)
    for t, markers in g.truth["markers"].items():
        cols = [names.index(m) for m in markers[:10]]
        assert (x[types == t][:, cols].mean(0) > x[types != t][:, cols].mean(0)).all(), t
    absent = [gene for genes in g.adata.uns["marker_genes"].values() for gene in genes
              if not any(gene in m for m in g.truth["markers"].values())]
    assert absent and not set(absent) & set(g.truth["informative_genes"])


def test_damaged_cells_found_by_mito_share_not_by_counts() -> None:
    g = generate("gen:celltypes?seed=13&cells=1500&genes=800&low_quality=0.06")
    x = _dense(g.adata.X)
    mt = np.array([n.startswith("MT-") for n in g.adata.var_names])
    frac = x[:, mt].sum(1) / x.sum(1)
    bad = g.adata.obs["low_quality"].to_numpy() == "low_quality"
    assert ((frac > 0.15) == bad).mean() > 0.99
    low = x.sum(1) < np.quantile(x.sum(1), 0.06)
    assert (low & bad).sum() / bad.sum() < 0.7


def test_options_leave_the_plain_dataset_unchanged() -> None:
    """The trap options draw from their own stream: the same seed without them is the same data."""
    plain = generate("gen:celltypes?seed=15&cells=600&genes=600")
    with_options = generate("gen:celltypes?seed=15&cells=600&genes=600&size_ratio=1&unlisted=0")
    assert (plain.adata.X != with_options.adata.X).nnz == 0


def test_mito_rich_population_needs_its_own_cutoff() -> None:
    g = generate("gen:celltypes?seed=16&cells=1500&genes=800&low_quality=0.06&mito_rich=0.18")
    x = _dense(g.adata.X)
    mt = np.array([n.startswith("MT-") for n in g.adata.var_names])
    frac = x[:, mt].sum(1) / x.sum(1)
    bad = g.adata.obs["low_quality"].to_numpy() == "low_quality"
    rich = g.adata.obs["cell_type"].to_numpy() == g.truth["types"][0]
    assert ((frac > 0.2) == bad).mean() < 0.97  # no single cut-off separates them
    for group in (rich, ~rich):  # within a population an outlier rule does
        f, b = frac[group], bad[group]
        cut = np.median(f) + 3 * 1.4826 * np.median(np.abs(f - np.median(f)))
        assert ((f > cut) == b).mean() > 0.97


def test_size_ratio_unlisted_and_subtypes() -> None:
    g = generate("gen:celltypes?seed=17&cells=1500&genes=800&rare=0&size_ratio=3&unlisted=1"
                 "&subtypes=1")
    x = _dense(g.adata.X)
    types = g.adata.obs["cell_type"].astype(str).to_numpy()
    tot = x.sum(1)
    assert np.median(tot[types == "B cell"]) > 2.5 * np.median(tot[types == "T cell"])
    names = list(g.adata.var_names)
    norm = x / tot[:, None]
    for gene, fc in g.truth["b_vs_t_log2fc"].items():  # the truth is the CP10k fold of means
        j = names.index(gene)
        got = np.log2(norm[types == "B cell", j].mean() / norm[types == "T cell", j].mean())
        assert abs(got - fc) < 0.3
    assert g.truth["unlisted_types"] == ["Dendritic cell"]
    assert "Dendritic cell" in set(types) and "Dendritic cell" not in g.adata.uns["marker_genes"]
    sub = g.adata.obs["subtype"].astype(object).to_numpy()
    assert set(sub[types == "T cell"]) == {"T cell a", "T cell b"}
    assert all(v is None or v != v for v in sub[types != "T cell"])


def test_batches_labelled_gives_the_first_batch_its_labels() -> None:
    g = generate("gen:batches?seed=18&cells=900&genes=600&labelled=1")
    obs = g.adata.obs
    first = (obs["batch"] == "batch1").to_numpy()
    assert (obs["label"][first].astype(str) == obs["cell_type"][first].astype(str)).all()
    assert obs["label"][~first].isna().all()


def test_doublets_carry_two_populations_and_more_counts() -> None:
    g = generate("gen:doublets?seed=14&cells=1500&genes=800&rate=0.1")
    obs = g.adata.obs
    assert (obs["doublet"] == "doublet").sum() == g.truth["doublet_count"]["n_doublets"]
    tot = _dense(g.adata.X).sum(1)
    d = (obs["doublet"] == "doublet").to_numpy()
    assert np.median(tot[d]) > 1.5 * np.median(tot[~d])
    het = obs["heterotypic_doublet"].astype(object).to_numpy() == "doublet"
    assert het.sum() == g.truth["heterotypic_count"]["n_heterotypic"]


def test_trajectory_time_follows_the_manifold_not_the_root_distance() -> None:
    from scipy.stats import spearmanr

    g = generate("gen:trajectory?seed=15&cells=800")
    x = _lognorm(_dense(g.adata.X))
    t = g.adata.obs["sim_time"].to_numpy()
    names = list(g.adata.var_names)
    early = [names.index(m) for m in g.adata.uns["progenitor_markers"]]
    root = int(np.argmax(x[:, early].mean(1)))
    euclid = np.linalg.norm(x - x[root], axis=1)
    late = t > 0.5
    assert spearmanr(euclid[late], t[late])[0] < 0.7  # transient programmes switch off again
    assert set(g.adata.obs["branch"]) == {"trunk", "A", "B"}


def test_batches_shift_cells_and_one_population_is_batch_specific() -> None:
    g = generate("gen:batches?seed=16&cells=1200&genes=800")
    obs = g.adata.obs
    specific = g.truth["batch_specific"][0]
    assert set(obs.loc[obs["cell_type"] == specific, "batch"]) == {"batch1"}


def test_conditions_shift_composition_and_response_genes() -> None:
    g = generate("gen:conditions?seed=17")
    obs = g.adata.obs
    share = (obs.groupby("condition", observed=True)["cell_type"]
             .value_counts(normalize=True).unstack())
    up, down = g.truth["expanded"][0], g.truth["depleted"][0]
    assert share.loc["treated", up] > 1.8 * share.loc["control", up]
    assert share.loc["treated", down] < share.loc["control", down] / 1.8
    assert not any(s.startswith(("ctrl", "trt", "control", "treated")) for s in obs["sample"])


def test_ambient_soup_is_what_empty_droplets_hold() -> None:
    g = generate("gen:ambient?seed=18&cells=600&empty=1200&genes=600")
    x = _dense(g.adata.X)
    empty = (g.adata.obs["droplet"] == "empty").to_numpy()
    top = np.argsort(-x[empty].sum(0))[:10]
    assert len(set(np.array(g.adata.var_names)[top]) & set(g.truth["soup_top_genes"])) >= 7
    assert x[empty].sum(1).max() < x[~empty].sum(1).min()


def test_builtin_tasks_on_generated_data_withhold_every_truth_key() -> None:
    """A truth column may reach the agent only when the objective hands it over by name."""
    from cellprompt.datasets.generate import is_generated
    from cellprompt.tasks import builtin_tasks

    tasks = [t for t in builtin_tasks() if is_generated(t.dataset)]
    assert tasks
    for task in tasks:
        made = generate(task.dataset)
        assert "truth" in task.withhold.uns, task.id
        for col in made.truth_keys.get("obs", []):
            given = f'obs["{col}"]' in task.objective
            assert given or col in task.withhold.obs, f"{task.id} leaves obs[{col!r}] to the agent"
        name = parse_ref(task.dataset).mount_name
        assert f"/data/{name}.h5ad" in task.objective, task.id
        assert parse_ref(task.dataset).generator not in name, task.id


def test_data_source_names_where_data_comes_from() -> None:
    from cellprompt.datasets.resolve import data_source

    assert data_source("gen:doublets?seed=1") == "generated"
    assert data_source("builtin:pbmc68k_reduced") == "public"
    assert data_source("builtin:trajectory_sim") == "simulated"
    assert data_source("census:abc") == "public"
    assert data_source("/tmp/x.h5ad") == "local"


def test_hashtags_mark_cross_sample_doublets_and_leave_rna_unchanged() -> None:
    from cellprompt.datasets.generate.celltypes import doublets

    plain, tagged = doublets(7, cells=600), doublets(7, cells=600, hashtags=3)
    assert (plain.adata.X != tagged.adata.X).nnz == 0
    obs = tagged.adata.obs
    tags = obs[["HTO1", "HTO2", "HTO3"]].to_numpy(dtype=float)
    call = obs["sample_call"].astype(object)
    single = call.isin(["S1", "S2", "S3"]).to_numpy()
    cut = []  # each tag's own cut: between its stained and unstained singlets (log scale)
    for k, name in enumerate(["S1", "S2", "S3"]):
        on = tags[(call == name).to_numpy(), k]
        off = tags[single & (call != name).to_numpy(), k]
        assert np.median(on) > 3 * np.median(off)
        cut.append(np.sqrt(np.median(on) * np.median(off)))
    high = (tags > np.array(cut)).sum(axis=1)
    assert np.mean(high[(call == "doublet").to_numpy()] >= 2) > 0.8
    assert np.mean(high[single] == 1) > 0.8
    assert call.isna().sum() > 0 and "sample_call" in tagged.truth_keys["obs"]


def test_complexes_form_one_pair_that_is_not_the_two_largest_populations() -> None:
    from cellprompt.datasets.generate.celltypes import doublets

    g = generate("gen:doublets?seed=21&cells=800&genes=600&rate=0.05&complexes=0.06")
    obs = g.adata.obs
    cx = (obs["complex"] == "complex").to_numpy()
    assert cx.sum() == g.truth["complex_count"]["n_complexes"] == 48
    assert g.adata.n_obs == 800
    pair = "+".join(g.truth["complex_pair"])
    assert set(obs["cell_type"][cx].astype(str)) == {pair}
    assert g.truth["top_pair"] == g.truth["complex_pair"]
    singlets = obs["cell_type"][(obs["doublet"] == "singlet").to_numpy()].astype(str)
    assert set(singlets.value_counts().index[:2]) != set(g.truth["complex_pair"])
    tot = _dense(g.adata.X).sum(1)
    assert np.median(tot[cx]) > 1.5 * np.median(tot[(obs["doublet"] == "singlet").to_numpy()])
    plain = doublets(21, cells=800, genes=600, rate=0.05)
    assert "complex" not in plain.adata.obs and "complex_pair" not in plain.truth


def test_trajectory_landmark_and_earlier_terminal_onset() -> None:
    g = generate("gen:trajectory?seed=15&cells=800&end_onset=0.5&landmark=1")
    truth = g.adata.uns["truth"]
    assert g.adata.uns["branch_landmark"] == truth["transient_genes"]["A"][0]
    assert "branch_landmark" not in generate("gen:trajectory?seed=15&cells=800").adata.uns
    x = _lognorm(_dense(g.adata.X))
    names = list(g.adata.var_names)
    t = g.adata.obs["sim_time"].to_numpy()
    branch = g.adata.obs["branch"].astype(str).to_numpy()
    mid = [names.index(n) for n in truth["transient_genes"]["A"]]
    end = [names.index(n) for n in truth["terminal_genes"]["A"]]
    both = (branch == "A") & (t > 0.6) & (t < 0.7)  # the programmes overlap: no gap to the end
    trunk = branch == "trunk"
    assert x[both][:, mid].mean() > x[trunk][:, mid].mean() + 0.5
    assert x[both][:, end].mean() > x[trunk][:, end].mean() + 0.5
