"""Unit tests of the service's pure parts: output capping and workspace path confinement."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.sandbox.service.files import PathRejected, confine
from cellprompt.sandbox.service.outputs import OutputCollector, truncate_middle


def test_truncate_middle_keeps_head_and_tail_and_counts_the_cut() -> None:
    text = "A" * 100 + "B" * 1000 + "C" * 100
    cut = truncate_middle(text, 200)
    assert cut.startswith("A" * 100) and cut.endswith("C" * 100)
    assert "[1000 characters cut" in cut
    assert truncate_middle("short", 200) == "short"


def test_stream_flood_stays_bounded_and_merges_chunks() -> None:
    out = OutputCollector(cap=1000)
    for i in range(200_000):
        out.stream("stdout", f"line {i}\n")
    (stream,) = out.render()
    assert stream["text"].startswith("line 0\nline 1\n")
    assert stream["text"].endswith("line 199999\n")
    assert len(stream["text"]) < 1200
    cut = int(stream["text"].split("...[")[1].split()[0])
    assert cut == sum(len(f"line {i}\n") for i in range(200_000)) - 1000


def test_streams_alternate_and_rich_outputs_are_capped() -> None:
    out = OutputCollector(cap=100, max_outputs=4)
    out.stream("stdout", "a")
    out.stream("stderr", "b")
    out.rich("display_data", {"text/html": "x" * 500, "image/png": "y" * 500}, {})
    out.error("E", "v" * 500, ["tb"])
    out.rich("display_data", {"text/plain": "dropped"}, {})
    rendered = out.render()
    assert [o["type"] for o in rendered] == ["stream", "stream", "display_data", "error", "stream"]
    data = rendered[2]["data"]
    assert "cut from the middle" in data["text/html"] and "image/png" not in data
    assert "image/png output of 500 bytes omitted" in data["text/plain"]
    assert len(rendered[3]["evalue"]) < 200
    assert "1 further outputs dropped" in rendered[4]["text"]


def test_clear_output_empties_the_collector() -> None:
    out = OutputCollector()
    out.stream("stdout", "x")
    out.clear()
    assert out.render() == []


def test_confine_accepts_workspace_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert confine(tmp_path, "a/b.txt") == tmp_path.resolve() / "a" / "b.txt"
    assert confine(tmp_path, "/workspace/a/b.txt") == tmp_path.resolve() / "a" / "b.txt"


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", "link/passwd", "flink"])
def test_confine_rejects_escapes(tmp_path: Path, bad: str) -> None:
    (tmp_path / "link").symlink_to("/etc")
    (tmp_path / "flink").symlink_to("/etc/passwd")
    with pytest.raises(PathRejected):
        confine(tmp_path, bad)
