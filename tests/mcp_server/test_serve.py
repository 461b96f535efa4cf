"""`cellprompt mcp serve` driven by the official SDK's own client, over stdio and loopback HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from cellprompt.agent.tools import coerce_answer
from cellprompt.export.notebook import trial_to_notebook
from cellprompt.llm.reference import last_json_object
from cellprompt.records.run import TrialRecord
from cellprompt.runs.plan import plan_trials
from cellprompt.runs.store import RunStore
from cellprompt.runs.trial import execute_trial
from tests.mcp_server.conftest import PROMPT, QUICK_TASK, write_plan


def finished_run(outputs: Path, timeout_s: float = 90) -> tuple[RunStore, TrialRecord]:
    """The one run folder under `outputs`, once its trial is graded and stored."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for folder in outputs.glob("*/run.json"):
            store = RunStore(folder.parent)
            if store.manifest().status == "finished":
                [record] = store.trials()
                return store, record
        time.sleep(0.2)
    raise AssertionError(f"no finished run under {outputs}")


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_sdk_client_plays_a_full_trial_over_stdio(mcp_env: dict[str, str], tmp_path: Path) -> None:
    outputs = Path(mcp_env["CELLPROMPT_OUTPUTS_DIR"])
    _, _ = write_plan(tmp_path, [QUICK_TASK])
    from cellprompt.tasks import load_task

    cells = load_task(QUICK_TASK).reference.cells  # type: ignore[union-attr]
    seen: dict[str, Any] = {}

    async def client() -> None:
        params = StdioServerParameters(
            command=sys.executable, env=mcp_env, cwd=str(tmp_path),
            args=["-m", "cellprompt.cli.main", "mcp", "serve", "--task", QUICK_TASK, "--sandbox", "bwrap",
                  "--prompt", PROMPT])
        async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
            init = await session.initialize()
            seen["instructions"] = init.instructions
            seen["tools"] = {t.name for t in (await session.list_tools()).tools}
            seen["resource"] = (await session.read_resource("cellprompt://task")).contents[0].text
            seen["fail"] = await session.call_tool("execute_python", {"code": "print(adata.n_obs)"})
            for cell in cells:  # the fix: load the data first, then compute
                seen["last"] = await session.call_tool("execute_python", {"code": cell, "timeout": 60})
            seen["malformed"] = await session.call_tool("submit_answer", {"answer": [1, 2]})
            answer = last_json_object(text(seen["last"]))
            seen["submit"] = await session.call_tool("submit_answer", {"answer": answer})
            seen["late"] = await session.call_tool("execute_python", {"code": "print(1)"})

    anyio.run(client)
    assert seen["tools"] == {"execute_python", "list_files", "read_file", "submit_answer"}
    assert PROMPT in seen["instructions"] and "/data/pbmc68k_reduced.h5ad" in seen["instructions"]
    assert "/data/pbmc68k_reduced.h5ad" in seen["resource"] and "## Answer" in seen["resource"]
    assert seen["fail"].isError and "NameError" in text(seen["fail"])
    assert text(seen["fail"]).startswith("[status: error]")
    assert text(seen["malformed"]) == f"error: {coerce_answer([1, 2])[1]}"  # the built-in loop's words
    assert seen["malformed"].isError and not seen["submit"].isError
    assert seen["late"].isError and "the trial is over" in text(seen["late"])

    store, record = finished_run(outputs)
    assert record.status == "submitted" and record.spec.model == "mcp:stdio" and record.spec.prompt == PROMPT
    assert [c.name for t in record.turns for c in t.tool_calls] == [
        "execute_python", "execute_python", "execute_python", "submit_answer", "submit_answer"]
    assert [e.final_status for e in record.code_cells] == ["error", "ok", "ok"]
    assert record.turns[3].feedback == text(seen["malformed"])
    assert trial_to_notebook(record, run_dir=store.path).cells  # notebooks read it like any trial

    # the same task played by the built-in loop (the reference model) grades the same
    [spec] = plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=["reference"],
                         sandbox_backend="bwrap")
    builtin = execute_trial(spec, tmp_path / "builtin-run")
    assert builtin.passed and record.passed
    assert record.score == builtin.score == 1.0
    keep = {"grader", "score", "passed", "field_scores"}
    assert [g.model_dump(include=keep) for g in record.grades] == \
        [g.model_dump(include=keep) for g in builtin.grades]


def test_http_needs_the_token_and_grades_when_the_client_leaves(mcp_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    outputs = Path(mcp_env["CELLPROMPT_OUTPUTS_DIR"])
    token = "t" * 8 + "-secret-token-for-the-test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellprompt.cli.main", "mcp", "serve", "--task", QUICK_TASK,
         "--transport", "http"], env={**mcp_env, "CELLPROMPT_MCP_TOKEN": token}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "MCP server for task" in line, proc.stderr.read() if proc.poll() is not None else line  # type: ignore[union-attr]
        url = line.split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        config = json.loads(proc.stdout.readline().split("client config: ", 1)[1])  # type: ignore[union-attr]
        assert config["mcpServers"]["cellprompt"]["headers"]["Authorization"] == f"Bearer {token}"
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}):
            assert httpx.post(url, json=ping, headers=headers).status_code == 401

        async def client() -> str:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
                    streamable_http_client(url, http_client=http) as (r, w, _), ClientSession(r, w) as s:
                await s.initialize()
                result = await s.call_tool("execute_python", {"code": "print(6 * 7)"})
                return text(result)

        assert "42" in anyio.run(client)  # then the client closes its session without an answer
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]
    _, record = finished_run(outputs, timeout_s=1)
    assert record.status == "error" and "went away without submitting" in (record.error or "")
    assert not record.passed and record.score == 0.0 and record.grades  # graded all the same
    assert len(record.code_cells) == 1 and record.code_cells[0].final_status == "ok"
