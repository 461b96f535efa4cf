"""User-facing errors.

Every error a user can cause or fix is one of these. The message is a single
line that names the thing that went wrong and how to fix it; the CLI prints it
without a traceback and exits with `exit_code`.
"""

from __future__ import annotations


class CellpromptError(Exception):
    """Base of every error the CLI reports as a one-line message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(CellpromptError):
    """A command was called with missing or contradictory arguments."""

    exit_code = 2


class ConfigError(CellpromptError):
    """Settings, `.env` or `cellprompt.toml` are invalid or incomplete."""


class MissingAPIKeyError(ConfigError):
    """A provider was asked for but its API key is not set."""


class DatasetError(CellpromptError):
    """A dataset reference cannot be resolved, read or downloaded."""


class CensusError(DatasetError):
    """The CELLxGENE Census cannot be reached or does not hold what was asked."""


class TaskError(CellpromptError):
    """A task file or task id is invalid."""


class GradingError(CellpromptError):
    """A grader is misconfigured (unknown type, bad config)."""


class SandboxError(CellpromptError):
    """A sandbox cannot be started or used."""


class SandboxUnavailableError(SandboxError):
    """The requested sandbox backend cannot run on this machine."""


class SandboxDiedError(SandboxError):
    """The sandbox (not just its kernel) stopped answering."""


class ModelError(CellpromptError):
    """A chat model call failed after retries, or the model spec is invalid."""


class RunError(CellpromptError):
    """A run folder is missing, not a run, or cannot be resumed."""


class EvolveError(CellpromptError):
    """Prompt evolution cannot start or continue (budget, inputs)."""
