"""The HTTP API of DESIGN.md over one `KernelRunner`: thin routes, auth at the edge."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from service.archive import workspace_tar
from service.files import PathRejected, confine
from service.kernel import KernelRunner
from starlette.routing import Route

log = logging.getLogger("service.app")

MAX_TIMEOUT_S = 24 * 3600
MAX_FILE_BYTES = 256 << 20  # one file through GET /files; whole trees go through /archive


class ExecuteRequest(BaseModel):
    code: str
    timeout: float = 60


def create_app(runner: KernelRunner, token: str) -> FastAPI:
    """The app; `token` is compared in constant time and never logged."""
    expected = f"Bearer {token}".encode()

    def token_ok(request: Request) -> bool:
        return secrets.compare_digest(request.headers.get("authorization", "").encode(), expected)

    async def authorised(request: Request) -> None:  # async: no threadpool hop per request
        if not token_ok(request):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="cellprompt kernel service", docs_url=None, redoc_url=None,
                  openapi_url=None)
    auth = [Depends(authorised)]

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return {"status": "ok", "kernel": runner.state, "busy": runner.lock.locked()}

    async def execute(request: Request) -> Response:
        # the hot path, routed without FastAPI's dependency machinery and validated and
        # serialised by hand: a megabyte of output through the generic encoder costs
        # more than running `1+1`
        if not token_ok(request):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            req = ExecuteRequest.model_validate_json(await request.body())
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)[:500]}, status_code=422)
        timeout = min(max(req.timeout, 0.0), MAX_TIMEOUT_S)
        reply = await runner.execute(req.code, timeout)
        return Response(json.dumps(reply), media_type="application/json")

    app.router.routes.append(Route("/execute", execute, methods=["POST"]))

    @app.post("/interrupt", dependencies=auth)
    async def interrupt() -> dict[str, Any]:
        await runner.interrupt()
        return {"status": "ok"}

    @app.post("/restart", dependencies=auth)
    async def restart() -> dict[str, Any]:
        async with runner.lock:
            await runner.restart()
        return {"status": "ok", "state_lost": True}

    def _target(path: str) -> Path:
        try:
            return confine(runner.workspace, path)
        except PathRejected:
            raise HTTPException(status_code=400, detail="path must stay inside /workspace") from None

    @app.get("/files/{path:path}", dependencies=auth)
    async def get_file(path: str) -> Response:
        target = _target(path)
        if not target.is_file():
            raise HTTPException(status_code=404, detail="no such file in /workspace")
        if target.stat().st_size > MAX_FILE_BYTES:
            raise HTTPException(status_code=413, detail=f"file over {MAX_FILE_BYTES} bytes")
        return Response(content=target.read_bytes(), media_type="application/octet-stream")

    @app.get("/archive", dependencies=auth)
    def archive(max_bytes: int = 50 << 20) -> Response:  # sync: tarring runs in a thread
        data, skipped = workspace_tar(runner.workspace, max(0, max_bytes))
        return Response(content=data, media_type="application/x-tar",
                        headers={"x-skipped": json.dumps([n[:200] for n in skipped[:100]])})

    @app.put("/files/{path:path}", dependencies=auth)
    async def put_file(path: str, request: Request) -> dict[str, Any]:
        target = _target(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        body = await request.body()
        target.write_bytes(body)
        return {"status": "ok", "bytes": len(body)}

    return app
