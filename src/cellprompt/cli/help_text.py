"""What `--help` shows beyond the options: an Examples section for every command, no `<bool>`.

Why one module: examples are what a newcomer copies first, so every command has some and they
are kept side by side (a test fails for a command without any); and typer ≥ 0.20 prints
`<bool>` as the type of every flag (`--json <bool>`), which reads as if a value were expected.
Both are applied to the click command tree the entry point runs, whatever typer built it.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

HELP_NAMES = ["-h", "--help"]

EXAMPLES: dict[str, list[str]] = {
    "": ["cellprompt demo", "cellprompt tasks list", "cellprompt run --task all --model reference"],
    "demo": ["cellprompt demo", "cellprompt demo -j 4 --sandbox docker"],
    "configure": ["cellprompt configure", "cellprompt configure --base-url http://localhost:8000/v1"],
    "datasets": ["cellprompt datasets list --tissue blood --max-cells 20000",
                 "cellprompt datasets show builtin:pbmc68k_reduced"],
    "datasets versions": ["cellprompt datasets versions", "cellprompt datasets versions --all --json"],
    "datasets list": ["cellprompt datasets list --organism human --tissue blood --max-cells 20000",
                      "cellprompt datasets list --local"],
    "datasets show": ["cellprompt datasets show builtin:pbmc68k_reduced",
                      "cellprompt datasets show my_cells.h5ad --json"],
    "datasets download": ["cellprompt datasets download DATASET_ID",
                          "cellprompt datasets download DATASET_ID --to data/"],
    "tasks": ["cellprompt tasks list", "cellprompt tasks show pbmc68k-qc-mito"],
    "tasks list": ["cellprompt tasks list", "cellprompt tasks list --json"],
    "tasks show": ["cellprompt tasks show pbmc68k-qc-mito", "cellprompt tasks show tasks/my-task.yaml"],
    "tasks validate": ["cellprompt tasks validate tasks/my-task.yaml",
                       "cellprompt tasks validate --all --jobs 3"],
    "tasks grade": ["cellprompt tasks grade pbmc68k-qc-mito --answer answer.json",
                    "cellprompt tasks grade tasks/my-task.yaml --answer '{\"n_cells\": 700}'"],
    "tasks new": ["cellprompt tasks new my-task -o tasks/my-task.yaml   # a sealed task to fill in",
                  "cellprompt tasks new --open -d builtin:krumsiek11 -o tasks/krumsiek11-open.yaml"],
    "sandbox": ["cellprompt sandbox exec --code 'import scanpy; print(scanpy.__version__)'",
                "cellprompt sandbox status"],
    "sandbox build": ["cellprompt sandbox build", "cellprompt sandbox build --backend docker"],
    "sandbox start": ["cellprompt sandbox start -d data/pbmc.h5ad --memory 4g"],
    "sandbox status": ["cellprompt sandbox status"],
    "sandbox logs": ["cellprompt sandbox logs SANDBOX_ID 50"],
    "sandbox stop": ["cellprompt sandbox stop SANDBOX_ID", "cellprompt sandbox stop --all"],
    "sandbox exec": ["cellprompt sandbox exec --code 'print(1 + 1)'",
                     "cellprompt sandbox exec SANDBOX_ID analysis.py"],
    "run": ["cellprompt run --task all --model reference   # offline, the baseline prompt",
            "cellprompt run -p prompts/ -t pbmc68k-qc-mito -m openai:gpt-4o -n 3 -j 2",
            "cellprompt run -t all -m openai:llama3 --base-url http://localhost:8000/v1",
            "cellprompt run -c cellprompt.yaml -n 1   # flags override the file",
            "cellprompt run --resume RUN_ID --retry-errors"],
    "evaluate": ["cellprompt evaluate RUN_ID --judge-model anthropic:claude-sonnet-4-5",
                 "cellprompt evaluate outputs/RUN --samples 3 --figures"],
    "notebook": ["cellprompt notebook RUN_ID", "cellprompt notebook RUN_ID --trial TRIAL_ID --execute"],
    "report": ["cellprompt report RUN_ID", "cellprompt report RUN_A RUN_B -o compare.html",
               "cellprompt report RUN_ID -f table"],
    "evolve": ["cellprompt evolve --objective 'accurate QC' -p seed.txt -t pbmc68k-qc-mito "
               "-m openai:gpt-4o --budget 60",
               "cellprompt evolve --resume EVOLUTION_ID"],
    "mcp": ["cellprompt mcp serve --task pbmc68k-qc-mito"],
    "mcp bridge": ["cellprompt mcp bridge /tmp/trial-mcp.json   # the {mcp_config} of an agent: trial"],
    "mcp serve": ["cellprompt mcp serve --task pbmc68k-qc-mito",
                  "cellprompt mcp serve --task tasks/my-task.yaml --out outputs/"],
}


def epilog(path: str) -> str | None:
    """The Examples section for the command at `path` ("tasks list"), as typer renders an epilog:
    paragraphs split by blank lines, rich markup escaped."""
    lines = EXAMPLES.get(path)
    if not lines:
        return None
    return "\n\n".join(["[bold]Examples[/]", *(f"  {escape(line)}" for line in lines)])


def polish(command: Any, path: str = "") -> None:
    """Give every command of the tree its examples and hide the type of every flag."""
    if path in EXAMPLES:
        command.epilog = epilog(path)
    ctx = command.context_class(command, help_option_names=HELP_NAMES)
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer ≥ 0.20 would print "<bool>"
    for name, sub in (getattr(command, "commands", None) or {}).items():
        polish(sub, f"{path} {name}".strip())
