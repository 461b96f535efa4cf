"""The HTTP API of DESIGN.md over one `KernelRunner`: thin routes, auth at the edge.

Plain Starlette rather than FastAPI: six routes need no dependency injection or
OpenAPI, and FastAPI's import and route set-up (pydantic models per route) cost
more CPU than the kernel's own start, on every sandbox's cold start. Request
bodies are two fields, checked by hand; errors are `{"detail": ...}` as before.
The app is Starlette's bare `Router`: the application wrapper adds two
middlewares (error pages and exception handlers, neither used here) to every
call; an unexpected exception still becomes uvicorn's 500.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from service.archive import workspace_tar
from service.files import PathRejected, confine
from service.kernel import KernelRunner
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

MAX_TIMEOUT_S = 24 * 3600
MAX_FILE_BYTES = 256 << 20  # one file through GET /files; whole trees go through /archive
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_ARCHIVE_BYTES = 50 << 20

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def execute_request(body: bytes) -> tuple[str, float]:
    """`(code, timeout)` from an /execute body; ValueError says what is wrong."""
    req = json.loads(body)
    if not isinstance(req, dict) or not isinstance(req.get("code"), str):
        raise ValueError("the body must be a JSON object with a string 'code'")
    timeout = req.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError("'timeout' must be a number of seconds")
    return req["code"], min(max(float(timeout), 0.0), MAX_TIMEOUT_S)


def create_app(runner: KernelRunner, token: str) -> Router:
    """The app; `token` is compared in constant time and never logged."""
    expected = f"Bearer {token}".encode()

    def authorised(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            got = request.headers.get("authorization", "").encode()
            if not secrets.compare_digest(got, expected):
                return _error(401, "missing or wrong bearer token",
                              {"WWW-Authenticate": "Bearer"})
            return await handler(request)
        return checked

    async def status(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "kernel": runner.state,
                             "busy": runner.lock.locked()})

    async def execute(request: Request) -> Response:
        # serialised by hand: a megabyte of output through a generic encoder costs more
        # than running `1+1`
        try:
            code, timeout = execute_request(await request.body())
        except ValueError as exc:  # json.JSONDecodeError is one
            return _error(422, str(exc)[:500])
        reply = await runner.execute(code, timeout)
        return Response(json.dumps(reply), media_type="application/json")

    async def interrupt(_request: Request) -> Response:
        await runner.interrupt()
        return JSONResponse({"status": "ok"})

    async def restart(_request: Request) -> Response:
        async with runner.lock:
            await runner.restart()
        return JSONResponse({"status": "ok", "state_lost": True})

    def target(request: Request) -> Path:
        return confine(runner.workspace, request.path_params["path"])

    async def get_file(request: Request) -> Response:
        try:
            path = target(request)
        except PathRejected:
            return _error(400, "path must stay inside /workspace")
        if not path.is_file():
            return _error(404, "no such file in /workspace")
        if path.stat().st_size > MAX_FILE_BYTES:
            return _error(413, f"file over {MAX_FILE_BYTES} bytes")
        return Response(content=path.read_bytes(), media_type="application/octet-stream")

    async def put_file(request: Request) -> Response:
        try:
            path = target(request)
        except PathRejected:
            return _error(400, "path must stay inside /workspace")
        path.parent.mkdir(parents=True, exist_ok=True)
        body = await request.body()
        path.write_bytes(body)
        return JSONResponse({"status": "ok", "bytes": len(body)})

    async def archive(request: Request) -> Response:
        try:
            max_bytes = max(0, int(request.query_params.get("max_bytes", DEFAULT_ARCHIVE_BYTES)))
        except ValueError:
            return _error(422, "max_bytes must be an integer")
        # tarring runs in a thread: the loop keeps answering /status and /interrupt
        data, skipped = await run_in_threadpool(workspace_tar, runner.workspace, max_bytes)
        return Response(content=data, media_type="application/x-tar",
                        headers={"x-skipped": json.dumps([n[:200] for n in skipped[:100]])})

    return Router(routes=[
        Route("/status", status, methods=["GET"]),
        Route("/execute", authorised(execute), methods=["POST"]),
        Route("/interrupt", authorised(interrupt), methods=["POST"]),
        Route("/restart", authorised(restart), methods=["POST"]),
        Route("/files/{path:path}", authorised(get_file), methods=["GET"]),
        Route("/files/{path:path}", authorised(put_file), methods=["PUT"]),
        Route("/archive", authorised(archive), methods=["GET"]),
    ])
