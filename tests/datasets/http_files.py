"""A real HTTP file server on loopback whose misbehaviour a test scripts request by request.

Each GET takes the next step of `plan` (then "full" once the plan is used up):

* "full"          the file, honouring `Range: bytes=N-` (206) unless `If-Range` is stale
* "ignore-range"  the whole file with 200, whatever was asked
* "drop:N"        promise everything, send N bytes, close the connection
* "stall:N"       promise everything, send N bytes, then say nothing until the test ends
* "silent"        accept the request and never answer it

HEAD answers with the length, an ETag and whatever extra `headers` the test sets
(published checksums). `log` records (method, Range, If-Range) per request.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FileServer:
    data: bytes
    etag: str = '"v1"'
    headers: dict[str, str] = field(default_factory=dict)
    head_status: int = 200  # e.g. 405: a server that refuses HEAD
    plan: list[str] = field(default_factory=list)
    log: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/data/source.h5ad"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def start(self) -> FileServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _head(self, status: int, length: int, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("ETag", owner.etag)
                for key, value in {**owner.headers, **extra}.items():
                    self.send_header(key, value)
                self.end_headers()

            def do_HEAD(self) -> None:
                owner.log.append(("HEAD", None, None))
                if not self.path.endswith("/data/source.h5ad") or owner.head_status != 200:
                    self.send_error(404 if owner.head_status == 200 else owner.head_status)
                    return
                self._head(200, len(owner.data), {})

            def do_GET(self) -> None:
                rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                owner.log.append(("GET", rng, if_range))
                if not self.path.endswith("/data/source.h5ad"):
                    self.send_error(404)
                    return
                step = owner.plan.pop(0) if owner.plan else "full"
                if step == "silent":
                    owner.release.wait(30)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", rng or "")
                fresh = if_range is None or if_range == owner.etag
                if match and step != "ignore-range" and fresh:
                    start = int(match.group(1))
                body = owner.data[start:]
                if start:
                    if start >= len(owner.data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self._head(206, len(body), {
                        "Content-Range": f"bytes {start}-{len(owner.data) - 1}/{len(owner.data)}"})
                else:
                    self._head(200, len(body), {})
                kind, _, count = step.partition(":")
                if kind in ("drop", "stall"):
                    self.wfile.write(body[: int(count)])
                    self.wfile.flush()
                    if kind == "stall":
                        owner.release.wait(30)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
