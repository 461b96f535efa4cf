"""The MCP face of a `TrialSession`: tools, the task resource, and two transports.

Built on the official SDK's low-level `Server`, so the tool schemas are exactly the
built-in loop's (plus `list_files`/`read_file`) and every argument reaches
`TrialSession`, which words its errors like the loop does; the SDK's own input
validation is off for that reason.

The transport is streamable HTTP on 127.0.0.1 behind a bearer token; stdio clients
reach it through a relay (`bridge`), so the process that holds the trial never
belongs to the client, which may kill what it launched the moment it is done.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyUrl

from cellprompt.agent.tools import TOOLS
from cellprompt.errors import CellpromptError
from cellprompt.mcp.session import LIST_FILES, READ_FILE, TrialSession
from cellprompt.version import __version__

TASK_URI = "cellprompt://task"
SERVER_NAME = "cellprompt"
GRACE_S = 0.5  # after the trial ends, time for the last reply to reach the client

for _name in ("mcp", "uvicorn"):  # no last-resort printing of shutdown noise; apps may still log it
    logging.getLogger(_name).addHandler(logging.NullHandler())


def _not_shutdown_noise(record: logging.LogRecord) -> bool:
    """The SDK logs an error when we stop the server under a client's open event stream: normal here."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, anyio.ClosedResourceError)


logging.getLogger("mcp.server.streamable_http").addFilter(_not_shutdown_noise)


def tool_list() -> list[types.Tool]:
    """The built-in loop's two tools (execute_python gains an optional timeout) and two file tools."""
    execute, submit = TOOLS
    exec_schema = {**execute.parameters, "properties": {
        **execute.parameters["properties"],
        "timeout": {"type": "number", "description": "seconds; capped by the task's execution timeout"},
    }}
    return [
        types.Tool(name=execute.name, description=execute.description, inputSchema=exec_schema),
        types.Tool(name=LIST_FILES, description="List the files under /workspace with their sizes.",
                   inputSchema={"type": "object", "properties": {}}),
        types.Tool(name=READ_FILE, description="Read a text file (or PNG figure) from /workspace.",
                   inputSchema={"type": "object", "required": ["path"], "properties": {
                       "path": {"type": "string", "description": "a path under /workspace"}}}),
        types.Tool(name=submit.name, description=submit.description, inputSchema=submit.parameters),
    ]


def instructions(task_text: str, system_prompt: str | None = None) -> str:
    """What the server tells the client at start: the prompt (when we carry it) and the task."""
    head = (f"{system_prompt.strip()}\n\n" if system_prompt and system_prompt.strip() else "")
    return (f"{head}This server is one cellprompt trial: a single-cell analysis task in a sandbox. "
            "Run Python with execute_python (a persistent kernel; data under /data, files in "
            "/workspace), inspect files with list_files and read_file, and finish with "
            "submit_answer, which ends the trial. The task (also the resource "
            f"{TASK_URI}):\n\n{task_text}")


def build_server(session: TrialSession, task_text: str, system_prompt: str | None = None) -> Server:
    server: Server = Server(SERVER_NAME, version=__version__,
                            instructions=instructions(task_text, system_prompt))
    tools = tool_list()

    @server.list_tools()
    async def _list_tools() -> list[types.Tool]:
        return tools

    @server.call_tool(validate_input=False)  # the session checks arguments, in the loop's words
    async def _call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        reply = await anyio.to_thread.run_sync(session.call, name, arguments)
        content: list[types.ContentBlock] = [
            types.TextContent(type="text", text=reply.text)]
        content += [types.ImageContent(type="image", data=b64, mimeType="image/png") for b64 in reply.images]
        return types.CallToolResult(content=content, isError=reply.is_error)

    @server.list_resources()
    async def _list_resources() -> list[types.Resource]:
        return [types.Resource(uri=AnyUrl(TASK_URI), name="task", mimeType="text/markdown",
                               description="The objective, the data and the answer format")]

    @server.read_resource()
    async def _read_resource(uri: Any) -> list[ReadResourceContents]:
        if str(uri) != TASK_URI:
            raise ValueError(f"unknown resource {str(uri)[:200]!r}; the task is {TASK_URI}")
        return [ReadResourceContents(content=task_text, mime_type="text/markdown")]

    return server


# -- streamable HTTP --------------------------------------------------------------------------


class _BearerAuth:
    """Every request needs `Authorization: Bearer <token>`; notes a session the client closed."""

    def __init__(self, app: Any, token: str, closed: threading.Event) -> None:
        self.app, self.expected, self.closed = app, f"Bearer {token}".encode(), closed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        got = dict(scope.get("headers") or []).get(b"authorization", b"")
        if not hmac.compare_digest(got, self.expected):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": b"unauthorized\n"})
            return None
        if scope.get("method") != "DELETE":
            return await self.app(scope, receive, send)

        async def watch_send(message: dict) -> None:
            if message.get("type") == "http.response.start" and message.get("status") == 200:
                self.closed.set()  # the client ended its session: it has gone away
            await send(message)

        return await self.app(scope, receive, watch_send)


class HttpServer:
    """Streamable HTTP at http://127.0.0.1:PORT/mcp in a background thread."""

    def __init__(self, server: Server, session: TrialSession, *, token: str, port: int = 0) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.session, self.token = session, token
        self.client_closed = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", port))
        except OSError as exc:
            self.sock.close()
            raise CellpromptError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; pick another "
                                  "--port (0 picks a free one)") from None
        self.port = self.sock.getsockname()[1]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=["127.0.0.1:*", "localhost:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*"])
        manager = StreamableHTTPSessionManager(app=server, security_settings=security)

        async def endpoint(scope: dict, receive: Any, send: Any) -> None:
            await manager.handle_request(scope, receive, send)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            async with manager.run():
                yield

        app = Starlette(routes=[Route("/mcp", endpoint=_Asgi(endpoint), methods=["GET", "POST", "DELETE"])],
                        lifespan=lifespan)
        config = uvicorn.Config(_BearerAuth(app, token, self.client_closed), log_config=None,
                                log_level="warning", lifespan="on", access_log=False,
                                timeout_graceful_shutdown=2)
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self.sock]},
                                        name="cellprompt-mcp-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CellpromptError("the MCP HTTP server did not start")
            time.sleep(0.02)

    def wait(self, client_gone: threading.Event | None = None) -> None:
        """Until the trial ends (submit, a limit, a stop) or the client goes away."""
        gone = client_gone or threading.Event()
        while not (self.session.done.is_set() or self.client_closed.is_set() or gone.is_set()):
            self.session.check_limits()
            time.sleep(0.05)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self.sock.close()


class _Asgi:
    """Marks a plain ASGI callable as an app for starlette's `Route` (not a request handler)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
