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


def test_the_whole_reply_stays_under_the_total_cap_metadata_and_every_mime_included() -> None:
    import json

    out = OutputCollector(cap=1 << 20, total_cap=4 << 20)
    for i in range(300):  # 300 displays of a 100 kB custom mimetype, each with fat metadata
        out.rich("display_data", {"application/x-custom": "z" * 100_000, "text/plain": str(i)},
                 {"blob": "m" * 200_000})
    rendered = out.render()
    assert len(json.dumps(rendered)) <= 4 << 20
    assert "reply cap" in rendered[-1]["text"]  # the cut is marked for the agent and the report
    assert all(len(json.dumps(o.get("metadata", {}))) < 70_000 for o in rendered)


def test_the_archive_keeps_symlinks_as_symlinks_and_reads_no_special_file(tmp_path: Path) -> None:
    import io
    import os
    import tarfile

    from cellprompt.sandbox.service.archive import workspace_tar

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("answer")
    (tmp_path / "big.bin").write_bytes(b"0" * 5000)
    (tmp_path / "host").symlink_to("/etc")
    os.mkfifo(tmp_path / "pipe")  # opening it would block the service: never read
    data, skipped = workspace_tar(tmp_path, max_bytes=1000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
    assert members["host"].issym() and members["host"].linkname == "/etc"
    assert "d/a.txt" in members and "big.bin" not in members and "pipe" not in members
    assert any(s.startswith("big.bin") for s in skipped) and any(s.startswith("pipe") for s in skipped)


def test_reaping_after_each_cell_collects_ended_children_but_kept_ones() -> None:
    """The service reaps after every cell; a peek that finds nothing skips the /proc scan,
    so it must still collect every ended child that is not kept (the kernel is kept)."""
    import subprocess
    import time

    from cellprompt.sandbox.service.procs import reap_zombies

    def zombie(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return False

    kept, ended = subprocess.Popen(["true"]), subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not (zombie(kept.pid) and zombie(ended.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    reap_zombies(frozenset({kept.pid}))
    assert not Path(f"/proc/{ended.pid}").exists()
    assert zombie(kept.pid)
    assert kept.wait(timeout=5) == 0
    reap_zombies()  # nothing left to reap: returns at once
