"""Everything a run needs, checked before its first trial: tasks, models, the judge, datasets.

Why: a task whose `.h5ad` is gone or corrupt, a wrong model name or a dead server used to be
found by every trial in turn, each after its own retries, and the run ended as a table of
zeros. `cellprompt run`, `evaluate` and `evolve` call this first; a failure is one line (the
`CellpromptError` of the part that failed, naming what to fix) within seconds, and nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cellprompt.config import Settings, get_settings
from cellprompt.llm.preflight import check_model
from cellprompt.records.run import TrialSpec


@dataclass(frozen=True)
class ModelTarget:
    """One model at one server, and where the user named them (for the message's fix)."""

    model: str
    base_url: str | None = None
    url_source: str = "--base-url"
    model_source: str = "--model"


def check_models(targets: Iterable[ModelTarget], settings: Settings | None = None) -> None:
    """Key present and the server answering for each distinct model and server, in order."""
    seen: set[tuple[str, str | None]] = set()
    for target in targets:
        if (target.model, target.base_url) in seen:
            continue
        seen.add((target.model, target.base_url))
        check_model(target.model, base_url=target.base_url, url_source=target.url_source,
                    model_source=target.model_source, settings=settings)


def judge_target(judge: Mapping[str, object] | None) -> list[ModelTarget]:
    """The judge of a run's config (`{"model", "base_url", …}`), as a target; none without one."""
    if not judge or not judge.get("model"):
        return []
    url = judge.get("base_url")
    return [ModelTarget(str(judge["model"]), str(url) if url else None, "--judge-base-url",
                        "--judge-model")]


def check_datasets(specs: Iterable[TrialSpec]) -> None:
    """Each task loads and its dataset resolves to a readable `.h5ad` (fetched or written on
    first use, as the trial would; the trials then find it ready)."""
    from cellprompt.datasets import describe, resolve
    from cellprompt.runs.plan import spec_task

    checked: set[tuple[str, int | None]] = set()
    refs: set[str] = set()
    for spec in specs:
        if (spec.task_ref, spec.dataset_seed) in checked:
            continue
        checked.add((spec.task_ref, spec.dataset_seed))
        refs.add(spec_task(spec).dataset)
    for ref in sorted(refs):
        describe(resolve(ref).path)  # the HDF5 layout only: a corrupt file fails here


def preflight(specs: list[TrialSpec], *, judge: Mapping[str, object] | None = None,
              url_sources: Mapping[str, str] | None = None,
              settings: Settings | None = None) -> None:
    """Check a run's plan before any trial: models (the cheap, likely mistake) then datasets.

    `url_sources` maps a model to where its base URL came from when not `--base-url` (a field
    of the experiment file).
    """
    settings = settings or get_settings()
    sources = url_sources or {}
    check_models([ModelTarget(s.model, s.base_url, sources.get(s.model, "--base-url"))
                  for s in specs] + judge_target(judge), settings)
    check_datasets(specs)
