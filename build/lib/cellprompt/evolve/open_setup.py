"""Evolving a prompt on open analyses: datasets instead of tasks, the judge's grade as fitness.

The original evolver took an objective, a prompt and a dataset. Here each
dataset becomes an open task file in the evolution folder; without validation
(or test) datasets, validation and test use held-out replicates of the training
datasets under their own task ids, so no trial the search learnt from is used
to select or to report.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cellprompt.errors import UsageError
from cellprompt.evolve.budget import budget_for_iterations
from cellprompt.evolve.folder import EvolutionFolder
from cellprompt.evolve.schema import EvolveConfig


def _tasks(folder: Path, datasets: list[str], objective: str, suffix: str = "") -> list[str]:
    from cellprompt.runs.open_task import open_task, write_task

    refs = []
    for ref in dict.fromkeys(datasets):
        base = open_task(ref, objective)
        task = base.model_copy(update={"id": base.id + suffix}) if suffix else base
        refs.append(str(write_task(task, folder / "tasks" / f"{task.id}.yaml").resolve()))
    return refs


def open_evolution_config(outputs_dir: Path, *, evolution_id: str, objective: str, datasets: list[str],
                          val_datasets: list[str], test_datasets: list[str], test: bool = True,
                          budget: int | None = None, iterations: int | None = None,
                          **fields: Any) -> tuple[EvolveConfig, list[str]]:
    """The config of an open evolution, its task files written; and notes for the user.

    `fields` are the remaining `EvolveConfig` fields (model, judge_model, strategy, ...).
    """
    from cellprompt.datasets import resolve

    if not datasets:
        raise UsageError("missing --dataset: pass builtin:NAME, a .h5ad path or census:ID")
    if not fields.get("judge_model"):
        raise UsageError("an open evolution needs --judge-model: the judge's grade is its fitness")
    if budget is None and iterations is None:
        raise UsageError("missing --budget (trials) or --iterations (rewrites)")
    for ref in dict.fromkeys([*datasets, *val_datasets, *test_datasets]):
        resolve(ref)  # a one-line DatasetError before anything is written
    overlap = set(test_datasets) & (set(datasets) | set(val_datasets))
    if overlap:
        raise UsageError(f"--test-dataset {', '.join(sorted(overlap))} is also used to train or "
                         "validate: held-out datasets must be held out (omit --test-dataset to use "
                         "held-out replicates)")
    folder = outputs_dir / evolution_id
    notes: list[str] = []
    train = _tasks(folder, datasets, objective)
    if val_datasets:
        val = _tasks(folder, val_datasets, objective)
        if set(val_datasets) & set(datasets):
            notes.append("a --val-dataset is also a training dataset: validation is not held out")
    else:
        val = _tasks(folder, datasets, objective, "-val")
        notes.append("validation uses held-out replicates of the training dataset(s) (no --val-dataset)")
    tests: list[str] = []
    if test:
        if test_datasets:
            tests = _tasks(folder, test_datasets, objective)
        else:
            tests = _tasks(folder, datasets, objective, "-test")
            notes.append("the final test uses fresh replicates of the training dataset(s) "
                         "(no --test-dataset): it shows improvement on these data, not transfer")
    config = EvolveConfig(evolution_id=evolution_id, objective=objective, train_tasks=train,
                          val_tasks=val, test_tasks=tests, budget_trials=budget or 10**6,
                          max_proposals=iterations, judge_weight=1.0, **fields)
    if budget is None:
        config = config.model_copy(update={"budget_trials": budget_for_iterations(config, iterations or 1)})
    return config, notes


def start_open_evolution(outputs_dir: Path, **kwargs: Any) -> tuple[EvolutionFolder, list[str]]:
    """Write the tasks, check the budget and create the folder; nothing is left when that fails."""
    from cellprompt.evolve.api import start_evolution

    folder = outputs_dir / kwargs["evolution_id"]
    try:
        config, notes = open_evolution_config(outputs_dir, **kwargs)
        return start_evolution(config, outputs_dir), notes
    except BaseException:
        if folder.is_dir() and not (folder / "evolve.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise
