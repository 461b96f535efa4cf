"""Asking for an open analysis on a terminal, as the original tester did: the prompt source
(pasted, a file or a folder), the dataset (from `datasets/` and the built-ins), the code limit.

With no terminal every question becomes the one-line error of `ask`, naming the option.
"""

from __future__ import annotations

from pathlib import Path

from rich.prompt import IntPrompt, Prompt

from cellprompt.cli.console import err, interactive, out
from cellprompt.errors import UsageError

END = "END"  # prompts hold blank lines, so a paste ends with a line holding only this
TRIES = 3


def _read_paste() -> str:
    out.print(f"Paste the system prompt; finish with a line holding only {END} (or Ctrl-D).")
    lines: list[str] = []
    while True:  # input(), like rich's prompts: one reader of the terminal, nothing read ahead
        try:
            line = input()
        except EOFError:
            break
        if line.rstrip("\r") == END:
            break
        lines.append(line.rstrip("\r"))
    text = "\n".join(lines).strip("\n")
    if not text.strip():
        raise UsageError("the pasted prompt is empty: paste a prompt, or pass --prompt TEXT|FILE|FOLDER")
    return text


def _ask_path(question: str, want_dir: bool) -> str:
    kind = "folder" if want_dir else "file"
    for _ in range(TRIES):
        value = Prompt.ask(question, console=out).strip()
        path = Path(value).expanduser()
        if (path.is_dir() if want_dir else path.is_file()):
            return str(path)
        err.print(f"[yellow]{value!r} is not an existing {kind}[/]")
    raise UsageError(f"no existing prompt {kind} given: pass --prompt PATH")


def ask_prompts(values: list[str] | None) -> list[str]:
    """`--prompt` values, or on a terminal a choice of the built-in baseline, pasted text, a file or a
    folder of prompts; without a terminal the baseline, the same default a terminal offers."""
    if values:
        return values
    if not interactive():
        return ["baseline"]
    source = Prompt.ask("Prompt source", choices=["baseline", "paste", "file", "folder"],
                        default="baseline", console=out)
    if source == "baseline":
        return ["baseline"]
    if source == "paste":
        return [_read_paste()]
    return [_ask_path(f"Prompt {source} path", want_dir=source == "folder")]


def dataset_choices() -> list[str]:
    """Local datasets first (what the user brought), then the built-ins, as dataset refs."""
    from cellprompt.datasets import builtin_names, list_local

    local = [str(d.path) for d in list_local() if d.source != "builtin"]
    return local + [f"builtin:{name}" for name in builtin_names()]


def ask_datasets(values: list[str] | None, option: str = "--dataset (or --task)") -> list[str]:
    """`--dataset` values, or on a terminal a numbered list to pick from (or any ref typed in)."""
    if values:
        return values
    if not interactive():
        raise UsageError(f"missing {option}: pass builtin:NAME, a .h5ad path or census:ID "
                         "(no terminal to ask on)")
    choices = dataset_choices()
    out.print("Datasets:")
    for i, ref in enumerate(choices, start=1):
        out.print(f"  {i}. {ref}", highlight=False)
    for _ in range(TRIES):
        value = Prompt.ask("Dataset (number(s) separated by commas, or a ref/path)", default="1",
                           console=out).strip()
        picked: list[str] = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            if part.isdigit() and 1 <= int(part) <= len(choices):
                picked.append(choices[int(part) - 1])
            elif part.isdigit():
                picked = []
                err.print(f"[yellow]{part} is not in the list (1–{len(choices)})[/]")
                break
            else:
                picked.append(part)
        if picked:
            return picked
    raise UsageError("no dataset chosen: pass --dataset builtin:NAME, a .h5ad path or census:ID")


def ask_max_code_executions(value: int | None, default: int) -> int | None:
    """The code-attempt limit: asked on a terminal, the task's own default otherwise."""
    if value is not None or not interactive():
        return value
    return IntPrompt.ask("Maximum code executions per trial", default=default, console=out)
