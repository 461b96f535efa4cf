"""`HttpSandbox`: the one client of the kernel service, whatever backend launched it.

It never hangs on a dead sandbox: a request that fails because the service is
gone turns into a `"died"` result (for `execute`) or `SandboxDiedError`.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

import httpx

from cellprompt.errors import SandboxDiedError, SandboxError
from cellprompt.sandbox.base import ExecutionResult, Launched
from cellprompt.sandbox.process import http_client

# on top of the cell's own timeout: interrupt grace, a possible kernel restart, the network
TIMEOUT_MARGIN_S = 90.0


def _stop(launched: Launched) -> None:
    with contextlib.suppress(Exception):
        launched.stop()


def _relative(path: str) -> str:
    """Workspace paths may be given relative or as /workspace/...; nothing else absolute."""
    if path.startswith("/"):
        if not path.startswith("/workspace/"):
            raise SandboxError(f"{path} is outside /workspace: files move only in and out of it")
        path = path[len("/workspace/"):]
    if ".." in path.split("/"):
        raise SandboxError(f"{path} climbs out of /workspace with '..': use a path inside it")
    return path


class HttpSandbox:
    """A running sandbox; implements `cellprompt.sandbox.base.Sandbox`."""

    def __init__(self, launched: Launched, backend: str, *, owned: bool = True) -> None:
        self.id = launched.sandbox_id
        self.backend = backend
        self.launched = launched
        self.workspace = launched.workspace
        self._dead: str | None = None
        self._client = http_client(launched.endpoint, timeout=30.0)
        self._client.headers["Authorization"] = f"Bearer {launched.endpoint.token}"
        # closing, garbage collection and interpreter exit all end an owned sandbox
        self._finalizer = weakref.finalize(self, _stop, launched) if owned else None

    # -- the Sandbox protocol -------------------------------------------------------------

    def execute(self, code: str, timeout: float = 60) -> ExecutionResult:
        """Run a cell; a service that vanished mid-cell gives a `died` result, not a hang."""
        self._ensure_usable()
        try:
            resp = self._client.post("/execute", json={"code": code, "timeout": timeout},
                                     timeout=timeout + TIMEOUT_MARGIN_S)
        except httpx.TransportError as exc:
            if self._service_gone():
                return ExecutionResult(final_status="died", state_lost=True, message=self._dead)
            raise SandboxError(f"sandbox {self.id} did not answer ({type(exc).__name__}); "
                               "restart it or open a new one") from None
        return ExecutionResult.model_validate(self._checked(resp).json())

    def interrupt(self) -> None:
        self._call("POST", "/interrupt")

    def restart(self) -> None:
        self._call("POST", "/restart", timeout=TIMEOUT_MARGIN_S)

    def read_file(self, path: str) -> bytes:
        """A file of /workspace; `FileNotFoundError` when it is not there."""
        resp = self._call("GET", f"/files/{_relative(path)}", ok404=True)
        if resp.status_code == 404:
            raise FileNotFoundError(f"{path} is not in the sandbox's /workspace")
        return resp.content

    def write_file(self, path: str, data: bytes) -> None:
        self._call("PUT", f"/files/{_relative(path)}", content=data)

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status").json()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the kernel itself is up (launch returns as soon as HTTP answers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().get("kernel") == "ready":
                return
            time.sleep(0.01)
        raise SandboxError(f"the kernel of sandbox {self.id} did not start within {timeout:.0f} s")

    def alive(self) -> bool:
        return self._dead is None and self.launched.alive()

    def logs(self, lines: int = 100) -> str:
        return self.launched.logs(lines)

    def close(self) -> None:
        """Stop the sandbox and delete its folders; idempotent."""
        self._dead = self._dead or f"sandbox {self.id} was closed"
        with contextlib.suppress(Exception):
            self._client.close()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> HttpSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HttpSandbox {self.id} backend={self.backend}>"

    # -- plumbing ---------------------------------------------------------------------------

    def _ensure_usable(self) -> None:
        if self._dead is not None:
            raise SandboxDiedError(f"{self._dead}; open a new sandbox")

    def _service_gone(self) -> bool:
        """After a failed request: wait briefly for the holder to exit, then judge."""
        for _ in range(40):
            if not self.launched.alive():
                self._dead = (f"the sandbox {self.id} stopped (its kernel service process "
                              "exited); all state is lost")
                return True
            time.sleep(0.05)
        return False

    def _call(self, method: str, url: str, *, timeout: float = 30.0, ok404: bool = False,
              content: bytes | None = None) -> httpx.Response:
        self._ensure_usable()
        try:
            resp = self._client.request(method, url, content=content, timeout=timeout)
        except httpx.TransportError:
            if self._service_gone():
                raise SandboxDiedError(f"{self._dead}; open a new sandbox") from None
            raise SandboxError(f"sandbox {self.id} did not answer {method} {url}") from None
        if ok404 and resp.status_code == 404:
            return resp
        return self._checked(resp)

    def _checked(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code == 401:
            raise SandboxError(f"sandbox {self.id} refused the token (401)")
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text[:200]
            raise SandboxError(f"sandbox {self.id}: {resp.request.method} "
                               f"{resp.request.url.path} failed ({resp.status_code}): {detail}")
        return resp
