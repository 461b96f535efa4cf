"""Secure code execution for agent code: `open_sandbox`, `SandboxPool`, backends.

See DESIGN.md ("Python API") and `base.py` for the protocol every backend follows.
"""

from cellprompt.sandbox import manage
from cellprompt.sandbox.api import open_sandbox
from cellprompt.sandbox.base import ExecutionResult, Sandbox, SandboxSpec
from cellprompt.sandbox.client import HttpSandbox
from cellprompt.sandbox.pool import SandboxPool
from cellprompt.sandbox.registry import get_backend
from cellprompt.sandbox.scripted import ScriptedSandbox

__all__ = ["ExecutionResult", "HttpSandbox", "Sandbox", "SandboxPool", "SandboxSpec", "ScriptedSandbox",
           "get_backend", "manage", "open_sandbox"]
