"""The leak guard: a candidate prompt must not carry facts of the tasks it was evolved on.

A prompt that says "this dataset has 700 cells and its cell types are in
obs['bulk_labels']" or "the answer is C" scores well on exactly those tasks and
teaches nothing. Facts are gathered from every train, validation and test task
(its id; the truth a grader's config holds and the withheld truth of its sealed
copy — recomputed values, withheld labels, marker lists; for open analyses the
dataset's name, shape, dataset-specific columns and category sets) and a
candidate that carries one is refused with the reason, before it costs a trial.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# obs/var column names every scanpy user writes: naming them is general practice, not a leak
GENERIC_COLUMNS = {
    "n_genes", "n_counts", "total_counts", "n_genes_by_counts", "pct_counts_mt", "percent_mito",
    "pct_counts_ribo", "log1p_total_counts", "log1p_n_genes_by_counts", "leiden", "louvain",
    "phase", "s_score", "g2m_score", "batch", "sample", "cell_type", "celltype", "cluster",
    "clusters", "highly_variable", "means", "dispersions", "dispersions_norm", "gene_ids",
    "gene_symbols", "feature_name", "gene_name", "mt", "ribo", "n_cells", "n_cells_by_counts",
    "mean_counts", "pct_dropout_by_counts", "total_counts_mt", "donor_id", "tissue", "disease",
    "assay", "organism", "sex",
}
GENERIC_CATEGORIES = {"phase", "sex", "organism", "assay"}  # G1/S/G2M are not a dataset's own labels
MIN_SET_HITS = 3  # naming one cell type is general knowledge; listing a dataset's set is a leak
MAX_TRUTH_SCALARS = 500  # a withheld matrix (embeddings, graphs) holds no phrase a prompt would copy


@dataclass(frozen=True)
class Fact:
    """Something task-specific: a phrase (or a number) to never write, or a set of which a
    candidate may name at most `min_hits - 1` members."""

    values: tuple[str, ...]
    what: str  # what it is, for the reason shown to people and the reflection model
    min_hits: int = 1


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


def _present(value: str, text: str) -> bool:
    """Whole-token match: '700' is not found in '7000' nor in 'p700'."""
    v = _norm(value).strip()
    if not v:
        return False
    return re.search(r"(?<![\w.])" + re.escape(v) + r"(?![\w])", text) is not None


def leaked(text: str, facts: Iterable[Fact], *, quote: bool = True) -> list[str]:
    """The reasons `text` carries task-specific facts (empty when it carries none).

    `quote=False` names the kind of fact but not the value: the reason sent back to the
    reflection model must not confirm which of its guesses is a task's truth.
    """
    norm = _norm(text)
    reasons: list[str] = []
    for fact in facts:
        hits = [v for v in fact.values if _present(v, norm)]
        if len(hits) >= fact.min_hits:
            shown = ", ".join(repr(h) for h in hits[:4])
            reasons.append(f"{fact.what}: {shown}" if quote else fact.what)
    return reasons


def leak_flag(text: str, facts: Iterable[Fact], *, quote: bool = True) -> str | None:
    reasons = list(dict.fromkeys(leaked(text, facts, quote=quote)))
    if not reasons:
        return None
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"carries task-specific facts ({reasons[0]}){more}: write rules that transfer to other data"


def _scalars(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _scalars(v)
    else:
        yield value


def _number_facts(numbers: Iterable[float], what: str) -> list[Fact]:
    """Numbers distinctive enough to be a fact: not 0-10, not a round 10/100/1000 style value."""
    out: list[Fact] = []
    for x in numbers:
        if isinstance(x, bool) or not isinstance(x, int | float) or abs(x) <= 10:
            continue
        if float(x).is_integer():
            n = int(x)
            if n % 50 == 0:
                continue
            out.append(Fact((str(n),), what))
        else:
            out.append(Fact((f"{x:.3g}", f"{x:.2f}".rstrip("0").rstrip(".")), what, min_hits=1))
    return out


def _value_facts(value: Any, what: str) -> list[Fact]:
    """Numbers and strings in a withheld value: a set of strings (marker lists, labels) counts as
    one fact of which naming `MIN_SET_HITS` members is a leak."""
    scalars = list(_scalars(value))
    strings = list(dict.fromkeys(str(s) for s in scalars if isinstance(s, str) and len(s.strip()) >= 3))
    facts = [Fact(tuple(strings), what, MIN_SET_HITS)] if len(strings) >= MIN_SET_HITS else [
        Fact((s,), what) for s in strings]
    return facts + _number_facts(scalars, what)


def truth_facts(truth: dict[str, Any], task_id: str) -> list[Fact]:
    """What the withheld truth of a sealed copy (`truth.json`: recipe results, withheld columns and
    entries) says: per-cell and per-gene columns give their label sets, the rest every value."""
    facts: list[Fact] = []
    for section, part in truth.items():
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            what = f"the withheld {key} of task {task_id}"
            if section in ("obs", "var") and isinstance(value, dict):
                labels = sorted({v for v in value.values() if isinstance(v, str) and len(v.strip()) >= 2})
                if len(labels) >= MIN_SET_HITS:
                    facts.append(Fact(tuple(labels), what, MIN_SET_HITS))
            elif section not in ("obsm", "varm", "obsp") and len(list(_scalars(value))) <= MAX_TRUTH_SCALARS:
                facts += _value_facts(value, what)
    return facts


def grader_facts(graders: list[dict[str, Any]]) -> list[Fact]:
    """Truth in a sealed task's grader configs: answer choices, expected values, marker lists."""
    facts: list[Fact] = []
    for spec in graders:
        config = spec.get("config") or {}
        kind = spec.get("type", "grader")
        for key, value in config.items():
            if key in ("tolerance", "threshold", "min_score", "relative", "answer_field"):
                continue
            if key == "correct_answer" and isinstance(value, str) and len(value.strip()) <= 2:
                letter = value.strip()
                facts.append(Fact((f"answer is {letter}", f"answer: {letter}", f"answer {letter}"),
                                  f"the answer of a {kind} task"))
                continue
            scalars = list(_scalars(value))
            strings = [str(s) for s in scalars if isinstance(s, str) and len(s.strip()) >= 3]
            if len(strings) >= MIN_SET_HITS:
                facts.append(Fact(tuple(strings), f"the expected {key} of a {kind} task", MIN_SET_HITS))
            else:
                facts += [Fact((s,), f"the expected {key} of a {kind} task") for s in strings]
            facts += _number_facts(scalars, f"an expected value ({key}) of a {kind} task")
    return facts


def dataset_facts(ref: str, name: str, summary: Any, metadata: dict[str, Any]) -> list[Fact]:
    """What identifies one dataset: its name and ids, its shape, its own columns and labels.

    `summary` is a `DatasetSummary` (what `describe` returns); only its fields are read.
    """
    ids = {name, ref.removeprefix("builtin:").removeprefix("census:")}
    ids |= {str(metadata[k]) for k in ("dataset_id", "dataset_version_id", "collection_id")
            if metadata.get(k)}
    facts = [Fact((i,), f"the id of dataset {name}") for i in sorted(ids) if len(i) >= 4]
    for n, unit in ((summary.n_obs, "cells"), (summary.n_vars, "genes")):
        forms = {str(n), f"{n:,}"}  # '700 cells', '2,638 cells': counts in words, not bare numbers
        facts.append(Fact(tuple(f"{f} {u}" for f in forms for u in (unit, unit[:-1], "observations")),
                          f"the shape of dataset {name}"))
    for col in [*summary.obs, *summary.var]:
        if col.name.lower() not in GENERIC_COLUMNS and len(col.name) >= 4:
            facts.append(Fact((col.name,), f"a column of dataset {name}"))
        if col.name.lower() in GENERIC_CATEGORIES:
            continue
        cats = [c for c in col.categories or [] if len(c.strip()) >= 2]
        if len(cats) >= MIN_SET_HITS:
            facts.append(Fact(tuple(cats), f"the categories of {name}'s column {col.name}", MIN_SET_HITS))
    return facts
