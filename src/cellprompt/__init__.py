"""cellprompt: benchmark and evolve the prompts of single-cell analysis agents.

The public API (`cellprompt.run`, `plan`, `evaluate`, `report`, `evolve_prompt`, `load_task`,
`grade`, ...) lives in `cellprompt.api` and is imported on first use: the sandbox and the
dataset tools import this package too and must not pull in every layer. (`evolve_prompt`, not
`evolve`: a subpackage of that name would shadow it once imported.)
"""

from typing import TYPE_CHECKING, Any

from cellprompt.version import __version__

if TYPE_CHECKING:
    from cellprompt.api import (
        evaluate,
        evolve_prompt,
        grade,
        load_task,
        plan,
        report,
        resume_evolution,
        run,
        start_run,
    )

__all__ = ["__version__", "evaluate", "evolve_prompt", "grade", "load_task", "plan", "report",
           "resume_evolution", "run", "start_run"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from cellprompt import api

        return getattr(api, name)
    raise AttributeError(f"module 'cellprompt' has no attribute {name!r}")
