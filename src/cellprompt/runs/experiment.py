"""An experiment file (`cellprompt.yaml`, or `run -c FILE`): the prompts × models × tasks matrix.

Why a file: a benchmark is re-run and shared; a long command line is neither. Flags given with
the file override it. Every mistake is one line naming the file, the line and the field, as the
task files do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cellprompt.errors import UsageError

DEFAULT_FILE = "cellprompt.yaml"


class ModelEntry(BaseModel):
    """A model and, for an OpenAI-compatible server, where it answers."""

    model_config = ConfigDict(extra="forbid")

    model: str
    base_url: str | None = None


class ExperimentLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_code_executions: int | None = Field(None, ge=1)
    max_turns: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0, description="USD per trial")
    wall_time: float | None = Field(None, gt=0, description="seconds per trial")


class ExperimentJudge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    samples: int = Field(3, ge=1)
    base_url: str | None = None


class Experiment(BaseModel):
    """What `cellprompt run` takes as flags, as a file."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(default_factory=list)  # texts, files, folders, `baseline`
    models: list[str | ModelEntry] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)  # ids, files, globs, `all`
    datasets: list[str] = Field(default_factory=list)  # open analyses
    objective: str | None = None
    replicates: int | None = Field(None, ge=1)
    parallel: int | None = Field(None, ge=1)
    limits: ExperimentLimits = Field(default_factory=ExperimentLimits)
    judge: ExperimentJudge | None = None
    sandbox: str | None = None
    executor: str | None = None  # local | ray
    ray_address: str | None = None  # with executor: ray

    def model_entries(self) -> list[ModelEntry]:
        return [m if isinstance(m, ModelEntry) else ModelEntry(model=m) for m in self.models]


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic's error location (the deepest one found)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            found = node.value[part]
        else:
            found = None
        if found is None:
            break
        node, line = found, found.start_mark.line + 1
    return line


def _expand_tasks(tasks: list[str], base: Path) -> list[str]:
    """Globs (`tasks/*.yaml`) become the files they match, relative to the experiment file."""
    expanded: list[str] = []
    for ref in tasks:
        if any(c in ref for c in "*?["):
            matches = sorted(str(p) for p in base.glob(ref) if p.is_file())
            if not matches:
                raise UsageError(f"task glob {ref!r} matches no file under {base}")
            expanded.extend(matches)
        elif (base / ref).is_file():
            expanded.append(str(base / ref))
        else:
            expanded.append(ref)  # a built-in id or `all`
    return expanded


def load_experiment(path: Path) -> Experiment:
    """Parse and check an experiment file; paths in it are relative to the file's folder."""
    if not path.is_file():
        raise UsageError(f"experiment file {path} does not exist: pass an existing -c FILE")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: an experiment file is a mapping (prompts:, models:, tasks:, …)")
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        first = max(exc.errors(), key=lambda e: len(e["loc"]))  # a union's closest branch
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p in ("str", "ModelEntry")))
        line = _line_of(node, loc)
        field = ".".join(str(p) for p in loc) or "(top)"
        fields = ", ".join(Experiment.model_fields)
        hint = f" (fields: {fields})" if first["type"] == "extra_forbidden" and len(loc) == 1 else ""
        raise UsageError(f"{path}{f':{line}' if line else ''}: {field}: {first['msg']}{hint}") from None
    base = path.parent
    prompts = [str(base / p) if (base / p).exists() else p for p in experiment.prompts]
    return experiment.model_copy(update={"prompts": prompts,
                                         "tasks": _expand_tasks(experiment.tasks, base)})
