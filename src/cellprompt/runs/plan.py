"""From the command line's prompts × tasks × models × replicates to trial specs."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from cellprompt.errors import UsageError
from cellprompt.records.run import Limits, TrialSpec
from cellprompt.tasks.spec import Task

PROMPT_SUFFIXES = (".txt", ".md", ".prompt")


def _digest(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


def looks_like_path(ref: str) -> bool:
    """One token with a path's marks (a slash, a leading `.` or `~`, a prompt suffix): a typo of a
    file must fail, not silently become the system prompt."""
    if not ref or any(c.isspace() for c in ref):
        return False
    return ("/" in ref or "\\" in ref or ref.startswith(("~", ".")) or Path(ref).suffix in PROMPT_SUFFIXES)


def load_prompts(refs: list[str]) -> dict[str, str]:
    """Prompt id → text, from built-in names (`baseline`), literal texts, files, or folders of
    prompt files.

    A file's id is its stem; a built-in's id is its name; a literal text's id is a hash of it, so
    the same text gets the same id on resume.
    """
    from cellprompt.prompts import builtin_prompt, builtin_prompt_names

    prompts: dict[str, str] = {}
    for ref in refs:
        path = Path(ref).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in PROMPT_SUFFIXES and p.is_file())
            if not files:
                raise UsageError(f"prompt folder {path} holds no {'/'.join(PROMPT_SUFFIXES)} files")
            for file in files:
                prompts[file.stem] = file.read_text(encoding="utf-8")
        elif path.is_file():
            prompts[path.stem] = path.read_text(encoding="utf-8")
        elif ref in builtin_prompt_names():
            prompts[ref] = builtin_prompt(ref)
        elif looks_like_path(ref):
            raise UsageError(f"prompt file or folder {ref} does not exist: pass an existing file or "
                             f"folder, a built-in prompt ({', '.join(builtin_prompt_names())}) or a "
                             "text with spaces")
        else:
            if not ref.strip():
                raise UsageError("an empty prompt was given: pass a text, a file or a folder")
            prompts[f"prompt-{_digest(ref, n=8)}"] = ref
    return prompts


def trial_id(prompt: str, task_id: str, model: str, replicate: int) -> str:
    """Deterministic, so that `--resume` recognises what is already done."""
    return f"{task_id}-r{replicate}-{_digest(prompt, task_id, model, str(replicate), n=10)}"


def task_ref_of(ref: str) -> str:
    """The `task_ref` a spec carries: a task file's absolute path (a worker elsewhere reloads it),
    else the reference as given (a built-in id)."""
    return str(Path(ref).resolve()) if Path(ref).exists() else ref


def fresh_dataset_seed() -> int:
    """`--fresh`: a new seed for generated datasets, drawn once per run (or evolution)."""
    return secrets.randbelow(2**31)


def spec_task(spec: TrialSpec) -> Task:
    """The task a spec runs: its task file, its generated dataset re-seeded under `--fresh`."""
    from cellprompt.datasets.generate import is_generated, with_seed
    from cellprompt.tasks import load_task

    task = load_task(spec.task_ref)
    if spec.dataset_seed is not None and is_generated(task.dataset):
        task = task.model_copy(update={"dataset": with_seed(task.dataset, spec.dataset_seed)})
    return task


def expand_task_refs(refs: list[str]) -> list[str]:
    """`all` stands for the built-in suite (in its order), wherever task references are taken."""
    if "all" not in refs:
        return refs
    from cellprompt.tasks import builtin_tasks

    suite = [t.id for t in builtin_tasks()]
    return suite + [r for r in refs if r != "all" and r not in suite]


def plan_trials(*, prompts: dict[str, str], tasks: list[str], models: list[str], replicates: int = 1,
                limits: Limits | None = None, sandbox_backend: str = "auto",
                base_url: str | None = None, fresh: bool = False) -> list[TrialSpec]:
    """The full matrix, tasks resolved to ids so each worker can reload its task by reference.

    `fresh`: tasks on generated data (gen:…) get a dataset seed drawn now, one per run, so
    the run sees data no earlier run saw; the seed is in every spec, so it replays exactly.
    """
    from cellprompt.tasks import load_task

    if replicates < 1:
        raise UsageError("--replicates must be at least 1")
    from cellprompt.llm import make_model

    resolved = [(ref, load_task(ref)) for ref in expand_task_refs(tasks)]
    for model in models:  # a bad spec or a missing key fails now, not once per trial
        if model == "reference":
            for _, task in resolved:
                if task.reference is None:
                    raise UsageError(f"task {task.id} has no reference solution: "
                                     "the reference model cannot play it")
        else:
            make_model(model, base_url=base_url)
    from cellprompt.datasets.generate import is_generated

    seed = fresh_dataset_seed() if fresh else None
    specs: list[TrialSpec] = []
    for prompt_id, prompt in prompts.items():
        for model in models:
            for ref, task in resolved:
                task_ref = task_ref_of(ref)
                for rep in range(replicates):
                    specs.append(TrialSpec(
                        trial_id=trial_id(prompt, task.id, model, rep), prompt_id=prompt_id,
                        prompt=prompt, task_id=task.id, task_ref=task_ref, model=model,
                        base_url=base_url, replicate=rep, limits=limits or Limits(),
                        sandbox_backend=sandbox_backend, task_kind=task.kind,
                        dataset_seed=seed if is_generated(task.dataset) else None))
    return specs
