"""A real HTTP server on 127.0.0.1 (random port, own thread) that plays a script.

Subclasses render the provider-neutral `script` responses in one provider's wire
format and describe requests in provider-neutral terms.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.script import Error, FakeRequest, Hang, Policy, Reply, Response

EXHAUSTED = Error(400, "fake server: no scripted response left and no policy set")


class FakeLLMServer:
    """Scripted per test: `push` responses (served in order) or set `policy`; read `requests`."""

    def __init__(self) -> None:
        self.requests: list[FakeRequest] = []
        self.policy: Policy | None = None
        # The models endpoints (`GET …/models[/NAME]`), which preflight asks before any trial:
        # None serves every name asked for; a list serves exactly those.
        self.models: list[str] | None = None
        self._queue: deque[Response] = deque()
        self._lock = threading.Lock()
        self._cancel = threading.Event()  # cuts hangs short on reset/close
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name=f"{type(self).__name__}")
        self._thread.start()

    # --- what tests use -------------------------------------------------------------

    @property
    def root(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The base URL to give the client."""
        return self.root

    def push(self, *responses: Response) -> None:
        with self._lock:
            self._queue.extend(responses)

    def reset(self) -> None:
        """Forget the script, the policy and the recorded requests; end running hangs."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.policy = None
            self.models = None
            self._cancel.set()
            self._cancel = threading.Event()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        self._cancel.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what providers define ------------------------------------------------------

    def describe(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> FakeRequest:
        raise NotImplementedError

    def render_reply(self, reply: Reply, request: FakeRequest) -> dict[str, Any]:
        raise NotImplementedError

    def render_error(self, error: Error) -> dict[str, Any]:
        raise NotImplementedError

    def accepts(self, path: str) -> bool:
        raise NotImplementedError

    def render_model(self, name: str) -> dict[str, Any]:
        """One entry of the models endpoints, in the provider's shape."""
        return {"id": name, "object": "model", "created": 0, "owned_by": "fake"}

    def models_reply(self, path: str) -> tuple[int, dict[str, Any]]:
        """(status, body) for `GET …/models` (the list) or `GET …/models/NAME` (one model)."""
        name = path.split("?")[0].rstrip("/").partition("/models")[2]
        name = name.lstrip("/")
        if not name:
            listed = self.models or []
            return 200, {"object": "list", "data": [self.render_model(n) for n in listed],
                         "has_more": False, "first_id": None, "last_id": None}
        if self.models is None or name in self.models:
            return 200, self.render_model(name)
        return 404, self.render_error(Error(404, f"The model `{name}` does not exist"))

    # --- machinery ------------------------------------------------------------------

    def _next(self, request: FakeRequest) -> Response:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
            policy = self.policy
        return policy(request) if policy is not None else EXHAUSTED

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Silence: test output is for assertions."""

            def _send(self, status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if "/models" not in self.path:
                    self._send(404, server.render_error(Error(404, f"no route {self.path}")))
                    return
                self._send(*server.models_reply(self.path))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not server.accepts(self.path):
                    self._send(404, server.render_error(Error(404, f"no route {self.path}")))
                    return
                body = json.loads(raw or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = server.describe(self.path, headers, body)
                response = server._next(request)
                if server.models is not None and body.get("model") not in server.models:
                    response = Error(404, f"The model `{body.get('model')}` does not exist")
                cancel = server._cancel
                try:
                    if isinstance(response, Hang):
                        cancel.wait(response.seconds)
                        if response.then is None:
                            self.close_connection = True
                            return
                        response = response.then
                    if isinstance(response, Error):
                        self._send(response.status, server.render_error(response),
                                   response.headers)
                    else:
                        self._send(200, server.render_reply(response, request))
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout) first

        return Handler
