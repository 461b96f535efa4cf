"""A stdio MCP server that relays every message to cellprompt's HTTP MCP server.

For clients that only launch stdio servers (some Codex CLI versions): they run
`python -m cellprompt.mcp.bridge CONFIG`, where CONFIG is the `{mcp_config}` file
of an `agent:` trial; the URL and bearer token are read from it, never from argv.
Messages pass through unchanged, so the trial records the client's calls as if it
had connected directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cellprompt.errors import ConfigError


def server_of(config: Path) -> tuple[str, dict[str, str]]:
    """The URL and headers of the `cellprompt` server in an `mcpServers` config file."""
    try:
        entry = json.loads(config.read_text(encoding="utf-8"))["mcpServers"]["cellprompt"]
        return str(entry["url"]), {str(k): str(v) for k, v in (entry.get("headers") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{config} is not a cellprompt MCP config ({type(exc).__name__}: {exc}); pass "
                          "the {mcp_config} file of an agent: trial") from None


def relay(config: Path) -> None:
    """Relay stdin/stdout to the server a `{mcp_config}` file names, until either side closes."""
    relay_to(*server_of(config))


def relay_to(url: str, headers: dict[str, str]) -> None:
    """Relay stdin/stdout to the streamable HTTP server at `url`, until either side closes."""
    import anyio
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    async def pump(source: Any, sink: Any, scope: anyio.CancelScope) -> None:
        async for message in source:
            if not isinstance(message, Exception):
                await sink.send(message)
        scope.cancel()

    async def main() -> None:
        timeout = httpx.Timeout(30.0, read=None)  # an execution may take minutes
        async with httpx.AsyncClient(headers=headers, timeout=timeout) as client, \
                streamable_http_client(url, http_client=client) as (from_http, to_http, _), \
                stdio_server() as (from_stdio, to_stdio), anyio.create_task_group() as tg:
            tg.start_soon(pump, from_stdio, to_http, tg.cancel_scope)
            tg.start_soon(pump, from_http, to_stdio, tg.cancel_scope)

    anyio.run(main)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cellprompt.mcp.bridge MCP_CONFIG_JSON", file=sys.stderr)
        return 2
    try:
        relay(Path(args[0]))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
