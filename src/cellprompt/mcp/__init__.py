"""A task's sandbox as a Model Context Protocol server, so any agent can be benchmarked.

`session` holds the tools and the record (no SDK needed); `server` puts them behind
the official `mcp` SDK over stdio or streamable HTTP; `external` plays a trial with an
`agent:` command as the model; `bridge` relays stdio to the HTTP server for clients
that only launch stdio servers. `cellprompt mcp serve` (one trial, one run folder) is
`runs/mcp_serve.py`, a layer up, since it makes a run. The SDK is the optional extra
`cellprompt[mcp]`.
"""

from __future__ import annotations

from cellprompt.errors import ConfigError


def require_sdk() -> None:
    """A one-line error, with the fix, when the optional `mcp` SDK is missing."""
    try:
        import mcp.server.lowlevel  # noqa: F401
    except ImportError:
        raise ConfigError("the MCP server needs the official MCP SDK: "
                          "pip install 'cellprompt[mcp]'") from None
