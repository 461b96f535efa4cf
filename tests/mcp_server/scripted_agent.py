"""A scripted external agent: a real MCP client (the official SDK) that plays a trial by plan.

Run as `python scripted_agent.py PLAN.json CONFIG [--stdio]`, as an `agent:` command would
be. CONFIG is the `{mcp_config}` file (streamable HTTP + bearer token), or with --stdio
the `{mcp_stdio_config}` file (the server launched as a stdio command). The plan says,
per task (recognised by a marker in the task text), which cells to run; the agent runs
a failing cell first, then the cells, sends one malformed answer, then submits what the
last cell printed. `mode` in the plan changes that: "loop" executes forever (limits),
"hang" sleeps (wall time), "leave" exits without submitting. Everything it saw is
appended to the plan's `log` file as JSON lines, for the test to check.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def log(plan: dict, event: str, **data: Any) -> None:
    with open(plan["log"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": event, "pid": os.getpid(), **data}) + "\n")


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


async def play(session: ClientSession, plan: dict) -> None:
    init = await session.initialize()
    tools = await session.list_tools()
    resource = await session.read_resource("cellprompt://task")
    task_text = resource.contents[0].text
    prompt_file = os.environ.get("CELLPROMPT_PROMPT_FILE")
    prompt = Path(prompt_file).read_text() if prompt_file else ""
    log(plan, "start", tools=sorted(t.name for t in tools.tools), instructions=init.instructions or "",
        prompt=prompt, task_text=task_text)
    mode = plan.get("mode", "solve")
    if mode == "hang":
        time.sleep(3600)
    if mode == "leave":
        return
    if mode == "loop":
        while True:
            result = await session.call_tool("execute_python", {"code": "print('again')"})
            log(plan, "execute", text=text_of(result), is_error=result.isError)
            if "trial is over" in text_of(result):
                return
    cells = next(p["cells"] for p in plan["tasks"] if p["marker"] in task_text)
    failed = await session.call_tool("execute_python", {"code": "print(undefined_name_xyz)"})
    log(plan, "fail", text=text_of(failed), is_error=failed.isError)
    printed = ""
    for cell in cells:
        result = await session.call_tool("execute_python", {"code": cell, "timeout": 120})
        printed = text_of(result)
        log(plan, "execute", text=printed, is_error=result.isError)
    files = await session.call_tool("list_files", {})
    log(plan, "list_files", text=text_of(files))
    bad = await session.call_tool("submit_answer", {"answer": "not a json object"})
    log(plan, "malformed", text=text_of(bad), is_error=bad.isError)
    answer = last_json(printed)
    done = await session.call_tool("submit_answer", {"answer": answer})
    log(plan, "submitted", text=text_of(done), is_error=done.isError, answer=answer)
    after = await session.call_tool("list_files", {})
    log(plan, "after", text=text_of(after), is_error=after.isError)
    print(f"submitted {json.dumps(answer)}")  # the agent's last words: kept as its final message


async def main(plan_path: str, config_path: str, stdio: bool) -> None:
    plan = json.loads(Path(plan_path).read_text())
    server = json.loads(Path(config_path).read_text())["mcpServers"]["cellprompt"]
    if stdio:
        params = StdioServerParameters(command=server["command"], args=server["args"])
        async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
            await play(session, plan)
        return
    async with httpx.AsyncClient(headers=server["headers"], timeout=httpx.Timeout(30, read=None)) as http, \
            streamable_http_client(server["url"], http_client=http) as (r, w, _), \
            ClientSession(r, w) as session:
        await play(session, plan)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], "--stdio" in sys.argv[3:])
