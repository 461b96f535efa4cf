"""The sandbox protocol every backend implements, in the spirit of httpx transports.

A backend only knows how to *launch* the kernel service somewhere isolated and
how to stop it; talking to the service (execute, files, restart) is the same
HTTP client for every backend (`client.HttpSandbox`). That keeps each backend
small and lets one conformance suite cover them all.

Contract between a backend and the kernel service it launches
(`cellprompt/sandbox/service/`, importable on its own as the package `service`):

    python -m service --uds /run/cellprompt/kernel.sock --token-file /run/cellprompt/token \
                      --workspace /workspace
    python -m service --host 127.0.0.1 --port N --token-file ...      (TCP option)

The token file is read once and deleted by the service at start, so neither the
token nor the host's environment reaches agent code. Inside the sandbox the
datasets are at `/data/<name>` (read-only) and the working directory is
`/workspace` (read-write, a fresh host folder per sandbox).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cellprompt.errors import SandboxError
from cellprompt.records.outputs import outputs_text

if TYPE_CHECKING:
    from cellprompt.sandbox.state import SandboxRecord

FinalStatus = Literal["ok", "error", "timeout", "died"]


def workspace_relative(path: str) -> str:
    """Workspace paths may be given relative or as /workspace/...; nothing else absolute.

    Checked on the host before a request is sent (the service checks again), so a caller's
    mistake is a clear error whatever the backend.
    """
    if path.startswith("/"):
        if not path.startswith("/workspace/"):
            raise SandboxError(f"{path} is outside /workspace: files move only in and out of it")
        path = path[len("/workspace/"):]
    if ".." in path.split("/"):
        raise SandboxError(f"{path} climbs out of /workspace with '..': use a path inside it")
    return path


class ExecutionResult(BaseModel):
    """The reply of `POST /execute`, as documented in DESIGN.md."""

    outputs: list[dict[str, Any]] = Field(default_factory=list)
    final_status: FinalStatus
    execution_count: int | None = None
    duration_s: float = 0.0
    message: str | None = None  # e.g. why the kernel died, what the timeout interrupted
    state_lost: bool = False  # the kernel restarted: variables from earlier cells are gone

    def text(self) -> str:
        """Streams, results and tracebacks as plain text, in order (for logs and prompts);
        figures are left out (`images()` has them)."""
        parts = [outputs_text(self.outputs, figure=""), (self.message or "").rstrip("\n")]
        return "\n".join(p for p in parts if p)

    def images(self) -> list[str]:
        """Base64 PNGs of every figure, in order."""
        return [o["data"]["image/png"] for o in self.outputs
                if o.get("type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})]


@dataclass(frozen=True)
class Mount:
    """A host file or folder made visible read-only at `/data/<name>` in the sandbox."""

    source: Path
    name: str


@dataclass
class SandboxSpec:
    """What a caller asks of a sandbox; backends map it onto their own mechanisms."""

    datasets: list[Mount] = field(default_factory=list)
    memory: str = "4g"  # "512m", "4g", or bytes
    cpus: float = 2.0
    pids: int = 512
    tcp: bool = False  # serve on 127.0.0.1:<port> instead of a Unix socket
    detached: bool = False  # survives the parent process (`cellprompt sandbox start`)


@dataclass
class Endpoint:
    """Where the kernel service listens, the token it wants, and who must be listening.

    `peer_pid` is the host pid that every connection's peer (SO_PEERCRED of the
    listening socket) must have: the launcher that created the socket (bwrap) or the
    service process itself (docker, local). The client refuses any other peer before
    it sends a byte, so a socket replaced by agent code never sees the token.
    """

    token: str
    uds: Path | None = None
    host: str | None = None
    port: int | None = None
    peer_pid: int | None = None


class Launched(ABC):
    """A running kernel service, as a backend started it."""

    sandbox_id: str
    endpoint: Endpoint

    @abstractmethod
    def alive(self) -> bool:
        """Whether the service's process/container still runs."""

    @abstractmethod
    def stop(self) -> None:
        """Stop everything the launch started and remove its host folders; idempotent."""

    @abstractmethod
    def logs(self, lines: int = 100) -> str:
        """The service's own log (never contains the token or executed code)."""

    def oom_kills(self) -> int | None:
        """How many processes the memory limit has killed so far; None when unknown."""
        return None


class Backend(ABC):
    """A way of launching the kernel service in isolation."""

    name: str

    @abstractmethod
    def check(self) -> None:
        """Raise `SandboxUnavailableError` with the fix when this backend cannot run here."""

    @abstractmethod
    def launch(self, spec: SandboxSpec, sandbox_id: str) -> Launched:
        """Start the service and return once it answers `/status`."""

    @abstractmethod
    def attach(self, record: SandboxRecord) -> Launched:
        """The recorded sandbox, running or not: what `cellprompt sandbox exec/stop/logs` act on.

        Never launches anything; `alive()` of the result says whether it still runs.
        """

    @abstractmethod
    def cleanup_stale(self) -> list[str]:
        """Remove sandboxes left by crashed parents; return their ids."""


@runtime_checkable
class Sandbox(Protocol):
    """What agent loops, graders and the CLI use; see DESIGN.md for the Python API."""

    id: str
    backend: str

    def execute(self, code: str, timeout: float = 60) -> ExecutionResult: ...
    def interrupt(self) -> None: ...
    def restart(self) -> None: ...
    def read_file(self, path: str) -> bytes: ...
    def write_file(self, path: str, data: bytes) -> None: ...
    def export_workspace(self, dest: Path, max_bytes: int = ...) -> list[str]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Sandbox: ...
    def __exit__(self, *exc: object) -> None: ...
