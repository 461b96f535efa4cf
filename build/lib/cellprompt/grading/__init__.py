"""Deterministic graders: one entry point, `grade`, over a registry of grader classes."""

from cellprompt.grading import choice, distribution, labels, numeric, python_check, sets, trajectory
from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import (
    GradeContext,
    Grader,
    GraderConfig,
    build_grader,
    grade,
    grader_types,
    register,
)

__all__ = [
    "GradeContext",
    "GradeResult",
    "Grader",
    "GraderConfig",
    "build_grader",
    "choice",
    "distribution",
    "grade",
    "grader_types",
    "labels",
    "numeric",
    "python_check",
    "register",
    "sets",
    "trajectory",
]
