"""The CLI as a script meets it: a subprocess with no terminal and a clean environment (no key,
no setting of this machine's leaks in), and the small task file both CLI suites run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TASK = """\
id: small-count
title: count the cells
dataset: {dataset}
objective: count the cells
answer:
  - {{name: n, type: integer}}
graders:
  - type: multiple_choice
    config: {{correct_answer: A}}
reference:
  cells:
    - "print(1)"
"""


def cli(args: list[str], cwd: Path, *, timeout: float = 120, **extra_env: str
        ) -> subprocess.CompletedProcess[str]:
    """`cellprompt ARGS` in `cwd`; outputs and datasets default to folders under `cwd`."""
    env = {k: v for k, v in os.environ.items()
           if k != "COLUMNS" and not k.startswith(("OPENAI_", "ANTHROPIC_", "CELLPROMPT_"))}
    env |= {"CELLPROMPT_OUTPUTS_DIR": str(cwd / "outputs"),
            "CELLPROMPT_DATASETS_DIR": str(cwd / "datasets"), **extra_env}
    return subprocess.run([sys.executable, "-m", "cellprompt.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
