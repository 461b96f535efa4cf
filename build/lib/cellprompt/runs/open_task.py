"""Open analyses: a dataset and an objective, no graders; the agent ends with a written report.

The tool cellprompt grew from worked on a prompt and a dataset alone. An open
task keeps that workflow inside the task schema (`kind: open`), so an ad-hoc
`cellprompt run --dataset REF` and a shared task file go through the same
runner, notebooks, report and judge. Every open task built here carries a
generic reference analysis, so the offline `reference` model can play it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from cellprompt.tasks.spec import ReferenceSolution, Task, TaskLimits, TaskMetadata

REPORT_FILE = "report.md"  # under /workspace: where the agent writes its report
MAX_REPORT_BYTES = 200_000

DEFAULT_OBJECTIVE = (
    "Carry out a complete expert analysis of this single-cell RNA-seq dataset: quality control "
    "(and filtering where the data are raw counts), normalisation, feature selection, "
    "dimensionality reduction, clustering, annotation of the clusters with marker genes, and the "
    "biological findings, with figures that support them. State the choices you make and why."
)

OPEN_RUBRIC = (
    "This is an open analysis with no withheld answer: judge whether each step is appropriate for "
    "this dataset (e.g. no re-normalisation of already normalised data), whether the annotation is "
    "supported by the marker genes shown, whether the figures support the claims, and whether the "
    "final report states findings the outputs actually show. Penalise claims no output supports."
)

OPEN_LIMITS = TaskLimits(max_code_executions=20, max_turns=40, wall_time_s=1800.0,
                         execution_timeout_s=300.0)

_REFERENCE_CELLS = [
    '''import json, os, warnings
warnings.filterwarnings("ignore")
import numpy as np, scanpy as sc, matplotlib.pyplot as plt
path = [os.path.join("/data", f) for f in sorted(os.listdir("/data")) if f.endswith(".h5ad")][0]
adata = sc.read_h5ad(path)
X = adata.X[: min(200, adata.n_obs)]
X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
is_counts = bool(X.min() >= 0 and np.allclose(X % 1, 0))
print(adata)
print("raw counts" if is_counts else "X is already transformed (non-integer or negative values)")''',
    '''steps = []
if is_counts:
    sc.pp.filter_cells(adata, min_genes=min(200, max(1, adata.n_vars // 4)))
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    steps.append("filtered cells and genes, normalised to 10,000 counts per cell, log1p")
    if adata.n_vars > 2000:
        sc.pp.highly_variable_genes(adata, n_top_genes=2000, subset=True)
        steps.append("kept 2,000 highly variable genes")
else:
    steps.append("kept the provided normalisation (X is not raw counts)")
n_pcs = max(2, min(30, adata.n_vars - 1, adata.n_obs - 1))
sc.pp.pca(adata, n_comps=n_pcs)
sc.pp.neighbors(adata, n_pcs=n_pcs)
sc.tl.leiden(adata, key_added="cluster", resolution=1.0)
sc.tl.umap(adata)
steps.append(f"PCA ({n_pcs} components), kNN graph, Leiden clustering, UMAP")
sc.pl.umap(adata, color="cluster", show=False)
plt.savefig("umap_clusters.png", dpi=80, bbox_inches="tight")
plt.show()
print(adata.obs["cluster"].value_counts().sort_index())''',
    '''sc.tl.rank_genes_groups(adata, "cluster", method="wilcoxon")
names = adata.uns["rank_genes_groups"]["names"]
markers = {str(c): [str(g) for g in names[c][:5]] for c in names.dtype.names}
known = {"T cells": ["CD3D", "CD3E", "IL7R"], "B cells": ["CD79A", "MS4A1"],
         "NK cells": ["GNLY", "NKG7"], "Monocytes": ["CD14", "LYZ", "FCGR3A"],
         "Dendritic cells": ["FCER1A", "CST3"], "Megakaryocytes": ["PPBP", "PF4"]}
labels = {}
for c in markers:
    cells = adata[adata.obs["cluster"] == c]
    score = {}
    for name, genes in known.items():
        genes = [g for g in genes if g in adata.var_names]
        if genes:
            score[name] = float(np.asarray(cells[:, genes].X.mean()))
    labels[c] = max(score, key=score.get) if score else "unannotated"
sizes = adata.obs["cluster"].value_counts()
lines = [f"# Analysis of {os.path.basename(path)}", "",
         f"{adata.n_obs} cells x {adata.n_vars} genes after preprocessing.", "", "## Steps"]
lines += [f"- {s}" for s in steps]
lines += ["", "## Clusters (top markers, annotation from canonical markers)"]
lines += [f"- cluster {c} ({int(sizes[c])} cells): {', '.join(m)} -> {labels[c]}"
          for c, m in markers.items()]
lines += ["", "Figure: umap_clusters.png (UMAP coloured by Leiden cluster)."]
report = "\\n".join(lines)
with open("report.md", "w") as fh:
    fh.write(report)
print(json.dumps({"report": report}))''',
]


def dataset_slug(ref: str) -> str:
    """A short, id-safe name for a dataset reference (builtin:NAME, census:ID@V, a path)."""
    body = ref.strip()
    for prefix in ("builtin:", "census:", "file://"):
        body = body.removeprefix(prefix)
    body = Path(body.split("@")[0]).stem if ("/" in body or body.endswith(".h5ad")) else body.split("@")[0]
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", body).strip("-.") or "dataset"


def _portable_ref(ref: str) -> str:
    """A local path made absolute, so the task file works from any folder (a run's, a colleague's)."""
    if ref.startswith(("builtin:", "census:")):
        return ref
    return str(Path(ref.removeprefix("file://")).expanduser().resolve())


def open_task(dataset: str, objective: str | None = None, *, task_id: str | None = None,
              rubric: str | None = None, title: str | None = None,
              max_code_executions: int | None = None) -> Task:
    """An open task on `dataset`; a custom objective gets its own id, so its trials never mix."""
    objective = (objective or "").strip() or DEFAULT_OBJECTIVE
    slug = dataset_slug(dataset)
    if task_id is None:
        task_id = f"open-{slug}"
        if objective != DEFAULT_OBJECTIVE:
            task_id += "-" + hashlib.sha256(objective.encode()).hexdigest()[:6]
    limits = OPEN_LIMITS.model_copy()
    if max_code_executions:
        limits.max_code_executions = max_code_executions
    return Task(id=task_id, kind="open", title=title or f"Open analysis of {slug}",
                dataset=_portable_ref(dataset), objective=objective,
                rubric=OPEN_RUBRIC if rubric is None else rubric,
                reference=ReferenceSolution(cells=list(_REFERENCE_CELLS)), limits=limits,
                metadata=TaskMetadata(category="other", difficulty="medium", tags=["open"]))


def _block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _block)


def task_yaml(task: Task) -> str:
    """The task as a readable YAML file (multi-line texts as blocks), loadable by `load_task`."""
    data: dict[str, Any] = task.model_dump(mode="json", exclude_defaults=False)
    for key in ("answer", "graders", "traps"):
        if not data.get(key):
            data.pop(key, None)
    if not any(data.get("withhold", {}).values()):
        data.pop("withhold", None)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_task(task: Task, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(task_yaml(task), encoding="utf-8")
    return path


def open_first_message(task: Task, data_description: str) -> str:
    """Objective, data, and how to finish: everything the agent of an open analysis is told."""
    return "\n".join([
        task.objective.strip(), "", "## Data", data_description, "", "## Report",
        f"Save figures as PNG files in /workspace and write your final report (Markdown) to "
        f"/workspace/{REPORT_FILE}: what you did, why, the findings and the figures that show them. "
        "When you are done, reply with a short summary of the findings and no code (or call "
        f'submit_answer with {{"report": "<the summary>"}}); that ends the analysis.',
    ])


def report_text(raw: bytes | None, answer: dict[str, Any] | None, last_text: str
                ) -> tuple[str | None, str | None]:
    """The report and where it came from: the workspace file first, else the final answer or message."""
    if raw is not None and raw.strip():
        text = raw[:MAX_REPORT_BYTES].decode("utf-8", errors="replace")
        return text, f"workspace:{REPORT_FILE}"
    if answer:
        value = answer.get("report")
        if isinstance(value, str) and value.strip():
            return value, "answer"
    if last_text.strip():
        return last_text, "message"
    return None, None
