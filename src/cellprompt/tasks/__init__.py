"""Tasks: the spec, loading (YAML, scBench JSON, built-in ids), materialisation, validation."""

from cellprompt.tasks.loader import builtin_tasks, load_task, load_tasks
from cellprompt.tasks.materialise import MaterialisedTask, materialise
from cellprompt.tasks.spec import AnswerField, ReferenceSolution, Task, TaskLimits, TaskMetadata, Withhold
from cellprompt.tasks.validate import ValidationReport, VariantResult, grade_task, validate, validate_all

__all__ = [
    "AnswerField",
    "MaterialisedTask",
    "ReferenceSolution",
    "Task",
    "TaskLimits",
    "TaskMetadata",
    "ValidationReport",
    "VariantResult",
    "Withhold",
    "builtin_tasks",
    "grade_task",
    "load_task",
    "load_tasks",
    "materialise",
    "validate",
    "validate_all",
]
