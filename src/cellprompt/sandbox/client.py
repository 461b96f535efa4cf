"""`HttpSandbox`: the one client of the kernel service, whatever backend launched it.

It never hangs: every call has one deadline (`execute`: its timeout plus
`TIMEOUT_MARGIN_S`), so a service that died, was stopped or drips its reply
fails the call on time — a dead one as a `"died"` result (for `execute`) or
`SandboxDiedError`. It trusts nothing it receives: replies are read up to a byte
cap, the listener is checked on every connection (`transport.py`), and the
workspace comes out as an archive extracted with tarfile's `data` filter, so no
host path is ever followed on the sandbox's say-so and no setuid bit lands.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
import weakref
from pathlib import Path
from typing import Any

from cellprompt.config import get_settings
from cellprompt.errors import SandboxDiedError, SandboxError
from cellprompt.sandbox.base import ExecutionResult, Launched, workspace_relative
from cellprompt.sandbox.transport import Reply, ServiceClient, TransportError

log = logging.getLogger(__name__)

# on top of the cell's own timeout: interrupt grace and the reply (a restart is not awaited)
TIMEOUT_MARGIN_S = 7.5
CALL_TIMEOUT_S = 30.0  # any other call
RESTART_TIMEOUT_S = 60.0  # a fresh kernel importing its start-up modules on a busy machine
ARCHIVE_OVERHEAD = 4 << 20  # tar headers and padding on top of the file bytes asked for


def _stop(launched: Launched) -> None:
    try:
        launched.stop()
    except Exception:  # a finaliser: nobody to raise to
        log.debug("stopping sandbox %s failed", launched.sandbox_id, exc_info=True)


class HttpSandbox:
    """A running sandbox; implements `cellprompt.sandbox.base.Sandbox`."""

    def __init__(self, launched: Launched, backend: str, *, owned: bool = True) -> None:
        self.id = launched.sandbox_id
        self.backend = backend
        self.launched = launched
        self.reply_cap = get_settings().sandbox_reply_cap
        self._oom_seen = launched.oom_kills()
        self._dead: str | None = None
        self._client = ServiceClient(launched.endpoint, launched.endpoint.token)
        # closing, garbage collection and interpreter exit all end an owned sandbox
        self._finalizer = weakref.finalize(self, _stop, launched) if owned else None

    # -- the Sandbox protocol -------------------------------------------------------------

    def execute(self, code: str, timeout: float = 60) -> ExecutionResult:
        """Run a cell; a service that vanished mid-cell gives a `died` result, not a hang."""
        self._ensure_usable()
        try:
            body = self._request("POST", "/execute", timeout + TIMEOUT_MARGIN_S,
                                 self.reply_cap + (1 << 20),
                                 content=json.dumps({"code": code, "timeout": timeout}).encode(),
                                 content_type="application/json").body
        except TransportError as exc:
            if self._service_gone():
                return ExecutionResult(final_status="died", state_lost=True, message=self._dead)
            raise SandboxError(f"sandbox {self.id} did not answer within {timeout:g} s + "
                               f"{TIMEOUT_MARGIN_S:g} s ({exc}); its service is "
                               "stopped or wedged: restart it or open a new one") from None
        try:
            result = ExecutionResult.model_validate_json(body)
        except ValueError:
            raise SandboxError(f"sandbox {self.id} sent a malformed reply to /execute") from None
        if result.final_status == "died":
            result.message = self._death_cause(result.message)
        return result

    def _death_cause(self, message: str | None) -> str | None:
        """Say whether the memory limit killed the kernel: only the host can see that."""
        seen, now = self._oom_seen, self.launched.oom_kills()
        self._oom_seen = now
        if now is None or seen is None or not message:
            return message
        cause = ("Cause: the sandbox's memory limit was reached." if now > seen else
                 "Cause: not the memory limit (the kernel was killed from inside the sandbox).")
        return f"{message} {cause}"

    def interrupt(self) -> None:
        self._call("POST", "/interrupt")

    def restart(self) -> None:
        self._call("POST", "/restart", timeout=RESTART_TIMEOUT_S)

    def read_file(self, path: str, max_bytes: int = 256 << 20) -> bytes:
        """A file of /workspace; `FileNotFoundError` when it is not there."""
        try:
            return self._call("GET", f"/files/{workspace_relative(path)}", cap=max_bytes).body
        except _NotFound:
            raise FileNotFoundError(f"{path} is not in the sandbox's /workspace") from None

    def export_workspace(self, dest: Path, max_bytes: int = 50 << 20) -> list[str]:
        """Copy /workspace into `dest` (file content up to `max_bytes`); return what was left out.

        The service sends a tar; it is extracted with tarfile's `data` filter: no absolute
        or escaping path or link, no device, no setuid/setgid bit. Links that would point
        out of `dest` are skipped and listed instead.
        """
        reply = self._call("GET", f"/archive?max_bytes={max_bytes}",
                           cap=max_bytes + ARCHIVE_OVERHEAD)
        skipped = _skipped_header(reply.headers)
        dest.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(reply.body), mode="r:") as tar:
                for member in tar:
                    try:
                        tar.extract(member, dest, filter="data")
                    except (tarfile.FilterError, OSError) as exc:
                        skipped.append(f"{member.name} ({exc})")
        except tarfile.TarError as exc:
            raise SandboxError(f"sandbox {self.id} sent a malformed workspace archive: {exc}"
                               ) from None
        return skipped

    def write_file(self, path: str, data: bytes) -> None:
        self._call("PUT", f"/files/{workspace_relative(path)}", content=data)

    def status(self) -> dict[str, Any]:
        reply = json.loads(self._call("GET", "/status").body)
        if not isinstance(reply, dict):
            raise SandboxError(f"sandbox {self.id} sent a malformed /status reply")
        return reply

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
        try:
            self._client.close()
        except Exception:  # the connections die with the sandbox anyway
            log.debug("closing the client of sandbox %s failed", self.id, exc_info=True)
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

    def _request(self, method: str, url: str, timeout: float, cap: int, *,
                 content: bytes | None = None, content_type: str | None = None) -> Reply:
        """One call under one deadline, its body read up to `cap` bytes; raises on HTTP errors."""
        reply = self._client.request(method, url, timeout=timeout, cap=cap, content=content,
                                     content_type=content_type)
        if reply.status == 404:
            raise _NotFound(url)
        if reply.status == 401:
            raise SandboxError(f"sandbox {self.id} refused the token (401)")
        if reply.status >= 400:
            try:
                detail = json.loads(reply.body).get("detail")
            except (ValueError, AttributeError):
                detail = reply.body[:200].decode(errors="replace")
            raise SandboxError(f"sandbox {self.id}: {method} {url.split('?')[0]} failed "
                               f"({reply.status}): {detail}")
        return reply

    def _call(self, method: str, url: str, *, timeout: float = CALL_TIMEOUT_S,
              content: bytes | None = None, cap: int = 1 << 20) -> Reply:
        self._ensure_usable()
        try:
            return self._request(method, url, timeout, cap, content=content)
        except TransportError:
            if self._service_gone():
                raise SandboxDiedError(f"{self._dead}; open a new sandbox") from None
            raise SandboxError(f"sandbox {self.id} did not answer {method} {url.split('?')[0]} "
                               f"within {timeout:g} s") from None


class _NotFound(SandboxError):
    """The service answered 404."""


def _skipped_header(headers: dict[str, str]) -> list[str]:
    try:
        names = json.loads(headers.get("x-skipped", "[]"))
    except ValueError:
        return ["(the skipped-files list was malformed)"]
    return [str(n)[:200] for n in names[:100]] if isinstance(names, list) else []
