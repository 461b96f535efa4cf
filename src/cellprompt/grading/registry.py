"""The grader registry and the one entry point, `grade`.

Every grader is one class: a `type` name, a pydantic `Config` (so a bad config
becomes one readable line) and a `grade` method. Registering is a decorator, so
adding a grader never touches this file.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cellprompt.errors import CellpromptError, GradingError
from cellprompt.grading.base import GradeResult
from cellprompt.registry import Registry
from cellprompt.sandbox.base import Mount


class GraderConfig(BaseModel):
    """Base of every grader config; scBench configs carry extra keys (notes, scoring) we ignore."""

    model_config = ConfigDict(extra="ignore")


@dataclass
class GradeContext:
    """What a grader may look at besides the answer: withheld truth and the agent's files."""

    truth: dict[str, Any] | None = None
    workspace: Path | None = None
    datasets: Sequence[Path | Mount] = field(default_factory=tuple)  # for python_check mounts
    backend: str = "auto"


C = TypeVar("C", bound=GraderConfig)


class Grader(ABC, Generic[C]):
    """One grading rule; instances hold a validated config."""

    type: ClassVar[str]
    Config: ClassVar[builtins.type[GraderConfig]]  # `type` is the name above, in this scope

    def __init__(self, config: C) -> None:
        self.config = config

    @abstractmethod
    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        """Score `answer` (None when the agent submitted nothing)."""

    def truth_requirements(self) -> dict[str, list[str]]:
        """Withheld parts this grader reads (e.g. {"obs": ["bulk_labels"]}); checked at load."""
        return {}


graders: Registry[type[Grader[Any]]] = Registry("grader type")


def register(cls: type[Grader[Any]]) -> type[Grader[Any]]:
    """Class decorator adding a grader under its `type` name."""
    return graders.register(cls.type)(cls)


def grader_types() -> list[str]:
    return sorted(graders)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    where = f"config.{loc}" if loc else "config"
    return f"{where}: {first['msg']}"


def build_grader(spec: Any) -> Grader[Any]:
    """Validate a `{"type": ..., "config": {...}}` dict and return its grader."""
    if not isinstance(spec, dict):
        raise GradingError(f"a grader must be a mapping with 'type' and 'config', got {spec!r}")
    kind = spec.get("type")
    cls = graders.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise GradingError(f"unknown grader type {kind!r}: use one of {', '.join(grader_types())}")
    config = spec.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise GradingError(f"{kind} grader: config must be a mapping, got {type(config).__name__}")
    try:
        parsed = cls.Config.model_validate(config)
    except ValidationError as exc:
        raise GradingError(f"{kind} grader: {_describe(exc)}") from None
    return cls(parsed)


def grade(grader: dict[str, Any], answer: dict[str, Any] | None,
          truth: dict[str, Any] | None = None, *, workspace: Path | None = None,
          datasets: Sequence[Path | Mount] = (), backend: str = "auto") -> GradeResult:
    """Grade one answer with one grader dict exactly as written in a task or scBench eval.

    `truth` is the withheld truth of a materialised task, `workspace` the host folder
    holding the agent's files (CSV answers), `datasets` what a `python_check` may mount.
    A bare (non-object) answer is read as `{"answer": value}`, the multiple-choice shape.
    """
    g = build_grader(grader)
    if answer is not None and not isinstance(answer, dict):
        answer = {"answer": answer}
    ctx = GradeContext(truth=truth, workspace=workspace, datasets=tuple(datasets), backend=backend)
    try:
        result = g.grade(answer, ctx)
    except CellpromptError:
        raise  # the task's or the caller's mistake (bad truth, no sandbox): theirs to fix
    except Exception as exc:  # a malformed answer is a failed grade, never a crash
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        result = GradeResult(score=0.0, passed=False,
                             reasoning=f"the answer could not be graded: {type(exc).__name__}"
                                       f"{': ' + first if first else ''}")
    return result.model_copy(update={"grader": g.type})
