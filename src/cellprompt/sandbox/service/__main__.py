"""`python -m service --uds PATH | --listen-fd N | --port N  --token-file F | --token-fd N ...`.

The kernel is launched before the web stack is imported, so its start-up
overlaps the service's own: cold start costs little more than a bare kernel.

`--listen-fd` and `--token-fd` are how the bwrap backend starts us: the host
creates the listening socket in a folder the sandbox cannot see and hands us
the socket and a pipe holding the token, so agent code can neither replace the
socket nor ever find the token on disk. `--scratch` names the sandbox's private
/tmp, emptied whenever the kernel restarts (never given for unsandboxed runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from service import procs
from service.kernel_process import KernelProcess
from service.numba_seed import seed_cache
from service.outputs import DEFAULT_CAP

KEEP_ALIVE_S = 24 * 3600


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="service", description=__doc__)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--uds", type=Path, help="serve on this Unix socket")
    where.add_argument("--port", type=int, help="serve on TCP (with --host, default 127.0.0.1)")
    where.add_argument("--listen-fd", type=int, help="serve on this inherited listening socket")
    p.add_argument("--host", default="127.0.0.1")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token-file", type=Path,
                       help="file holding the bearer token; deleted once read")
    token.add_argument("--token-fd", type=int, help="inherited pipe holding the bearer token")
    p.add_argument("--scratch", type=Path, default=None,
                   help="the sandbox's private /tmp: emptied on every kernel restart")
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--output-cap", type=int, default=DEFAULT_CAP)
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is gone (unsandboxed runs)")
    return p.parse_args(argv)


def _read_token(args: argparse.Namespace) -> str:
    if args.token_fd is not None:
        with os.fdopen(args.token_fd, "r") as fh:
            token = fh.read().strip()
    else:
        token = args.token_file.read_text().strip()
        args.token_file.unlink()
    if not token:
        sys.exit("service: the token file is empty")
    return token


def _watch_parent(pid: int) -> None:
    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)  # kernel dies with us: the subreaper kill in shutdown is skipped,
                # but ipykernel's own parent poller ends it
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


async def _serve(args: argparse.Namespace, token: str, private: Path,
                 first: KernelProcess) -> None:
    from service.kernel import KernelRunner  # jupyter_client loads while the kernel boots

    runner = KernelRunner(args.workspace, cap=args.output_cap, private=private, first=first,
                          scratch=args.scratch)
    await runner.start()
    import uvicorn
    from service.app import create_app

    app = create_app(runner, token)
    del token
    # the host keeps one connection open between cells, however long an agent thinks:
    # a connection the service closes just as a cell is sent would fail that cell
    opts: dict[str, Any] = dict(log_level="warning", access_log=False, lifespan="off", http="h11",
                                proxy_headers=False, timeout_keep_alive=KEEP_ALIVE_S)
    # httptools and uvloop (requirements.txt) cut the service's CPU per call by a quarter;
    # a runtime without them still serves, on h11 and asyncio's own loop
    with contextlib.suppress(ImportError):
        import httptools  # noqa: F401

        opts["http"] = "httptools"
    if args.listen_fd is not None:
        config = uvicorn.Config(app, fd=args.listen_fd, **opts)
    elif args.uds:
        config = uvicorn.Config(app, uds=str(args.uds), **opts)
    else:
        config = uvicorn.Config(app, host=args.host, port=args.port, **opts)
    server = uvicorn.Server(config)
    logging.getLogger("service").info("serving on %s", args.uds or (
        f"fd {args.listen_fd}" if args.listen_fd is not None else f"{args.host}:{args.port}"))
    try:
        await server.serve()
    finally:
        await runner.shutdown()


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = _read_token(args)
    if args.listen_fd is not None:
        os.set_inheritable(args.listen_fd, False)  # the kernel must never hold our socket
    args.workspace.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workspace)
    private = Path(tempfile.mkdtemp(prefix="cellprompt-service-"))
    first = KernelProcess(private, args.workspace)  # boots while we import the rest
    procs.harden_self()  # before the kernel can run any code: it is still importing
    seed_cache()  # long before agent code can import numba
    if args.parent_pid:
        _watch_parent(args.parent_pid)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args, token, private, first))
    else:
        uvloop.run(_serve(args, token, private, first))


if __name__ == "__main__":
    main()
