"""Load tasks: YAML task files, scBench eval JSON files, and built-in ids.

Every problem with a file becomes one `TaskError` line naming the file, the
field and what was expected, so a task author can fix it without a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from cellprompt.errors import GradingError, TaskError
from cellprompt.grading import build_grader
from cellprompt.tasks.spec import AnswerField, AnswerType, Category, Task

TASK_SUFFIXES = (".yaml", ".yml", ".json")


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    got = repr(first.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if first["type"] == "missing":
        return f"field '{loc}' is required{more}"
    msg = first["msg"].removeprefix("Value error, ")  # a validator's own sentence, as written
    return f"field '{loc}': {msg}, got {got}{more}"


def check_task(task: Task, where: str) -> Task:
    """Validate grader configs, and that graders only read truth the task withholds or computes."""
    from cellprompt.tasks import truths

    produced: dict[str, list[str]] = {}
    if task.truth is not None:
        try:
            produced = truths.provides(task.truth.recipe, task.truth.params)
        except TaskError as exc:
            raise TaskError(f"{where}: truth: {exc.message}") from None
    for i, spec in enumerate(task.graders):
        try:
            grader = build_grader(spec)
        except GradingError as exc:
            raise TaskError(f"{where}: graders[{i}]: {exc.message}") from None
        for section, names in grader.truth_requirements().items():
            listed = [*(getattr(task.withhold, section, None) or []), *produced.get(section, [])]
            for name in names:
                if name not in listed:
                    raise TaskError(f"{where}: graders[{i}] ({spec['type']}) reads {section} "
                                    f"'{name}' but neither withhold.{section} nor the truth "
                                    "recipe provides it")
    names = [v.name for v in task.variants]
    if len(set(names)) != len(names) or "reference" in names:
        raise TaskError(f"{where}: variants need distinct names other than 'reference'")
    return task


def task_from_dict(data: Any, where: str) -> Task:
    if not isinstance(data, dict):
        raise TaskError(f"{where}: expected a mapping of task fields, got {type(data).__name__}")
    try:
        task = Task.model_validate(data)
    except ValidationError as exc:
        raise TaskError(f"{where}: {_describe(exc)}") from None
    return check_task(task, where)


def load_yaml_task(path: Path) -> Task:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise TaskError(f"{path}: not valid YAML{line}: "
                        f"{getattr(exc, 'problem', None) or exc}") from None
    return task_from_dict(data, str(path))


_ANSWER_TYPES: dict[str, tuple[str, AnswerType]] = {
    "multiple_choice": ("answer", "string"),
    "marker_gene_precision_recall": ("top_marker_genes", "list[string]"),
    "label_set_jaccard": ("cell_types_predicted", "list[string]"),
    "distribution_comparison": ("cell_type_distribution", "dict"),
}


def _scbench_answer(grader: dict[str, Any]) -> list[AnswerField]:
    config = grader.get("config") or {}
    kind = grader.get("type")
    if kind == "numeric_tolerance":
        return [AnswerField(name=k, type="number") for k in (config.get("ground_truth") or {})]
    if kind in _ANSWER_TYPES:
        name, type_ = _ANSWER_TYPES[kind]
        return [AnswerField(name=config.get("answer_field", name), type=type_)]
    return []


def scbench_task(data: Any, where: str, dataset: str | Mapping[str, str] | None) -> Task:
    """An scBench eval (`id`, `task`, `grader`, `metadata`, `notes`) with its data node mapped."""
    if not isinstance(data, dict):
        raise TaskError(f"{where}: expected an scBench eval object, got {type(data).__name__}")
    for key in ("id", "task", "grader"):
        if key not in data:
            raise TaskError(f"{where}: field '{key}' is required in an scBench eval")
    node = data.get("data_node")
    if isinstance(dataset, Mapping):
        nodes = node if isinstance(node, list) else [node]
        ref = next((dataset[n] for n in nodes if isinstance(n, str) and n in dataset), None)
    else:
        ref = dataset
    if not ref:
        raise TaskError(f"{where}: scBench eval {data['id']!r} reads data node {node!r}; map it "
                        "to a dataset with --dataset (builtin:NAME, a .h5ad path or census:ID)")
    meta = data.get("metadata") or {}
    category = next((c for c in (meta.get("category"), meta.get("task"))
                     if c in get_args(Category)), "other")
    tags = [f"{k}:{v}" for k, v in meta.items() if isinstance(v, str | int) and k != "task"]
    grader = data["grader"]
    body = {
        "id": re.sub(r"[^A-Za-z0-9_.\-]", "-", str(data["id"])),
        "title": str(meta.get("title") or data["id"]),
        "dataset": ref,
        "objective": data["task"],
        "answer": [f.model_dump() for f in _scbench_answer(grader)] if isinstance(grader, dict)
        else [],
        "graders": [grader],
        "metadata": {"category": category, "tags": tags, "source": "scbench"},
        "traps": str(data.get("notes") or ""),
    }
    return task_from_dict(body, where)


def load_task_file(path: Path, *, dataset: str | Mapping[str, str] | None = None) -> Task:
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
        if isinstance(data, dict) and "task" in data and "objective" not in data:
            return scbench_task(data, str(path), dataset)
        return task_from_dict(data, str(path))
    task = load_yaml_task(path)
    return task.model_copy(update={"dataset": dataset}) if isinstance(dataset, str) else task


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Task]:
    folder = resources.files("cellprompt.tasks") / "builtin"
    tasks: dict[str, Task] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            with resources.as_file(entry) as path:
                task = load_yaml_task(Path(path))
            tasks[task.id] = task
    return tasks


def builtin_tasks(*, include_knowledge_only: bool = False) -> list[Task]:
    """The built-in suite, in id order; knowledge-only questions only when asked for."""
    return [t for t in _builtin().values()
            if include_knowledge_only or not t.metadata.knowledge_only]


def load_task(ref: str, *, dataset: str | Mapping[str, str] | None = None) -> Task:
    """A built-in id, or a .yaml/.yml/.json file (scBench evals need `dataset`)."""
    path = Path(ref).expanduser()
    if path.suffix in TASK_SUFFIXES or path.exists():
        return load_task_file(path, dataset=dataset)
    if ref in _builtin():
        task = _builtin()[ref]
        return task.model_copy(update={"dataset": dataset}) if isinstance(dataset, str) else task
    raise TaskError(f"unknown task {ref!r}: use a built-in id ({', '.join(_builtin())}) or a "
                    ".yaml/.json task file")


def load_tasks(refs: Iterable[str], *, dataset: str | Mapping[str, str] | None = None
               ) -> list[Task]:
    """Several refs; a folder stands for every task file inside it."""
    tasks: list[Task] = []
    for ref in refs:
        path = Path(ref).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in TASK_SUFFIXES)
            tasks.extend(load_task_file(p, dataset=dataset) for p in files)
        else:
            tasks.append(load_task(ref, dataset=dataset))
    return tasks
