"""Downloads against a real loopback HTTP server that stalls, drops, ignores Range, lies."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.datasets.transfer import Timeouts, fetch, part_path
from cellprompt.errors import CensusError
from tests.datasets.http_files import FileServer

FAST = Timeouts(connect=2.0, read=0.5)
SIZE = 3 * (1 << 20) + 12345  # several read chunks


@pytest.fixture
def server() -> Iterator[FileServer]:
    s = FileServer(os.urandom(SIZE)).start()
    yield s
    s.close()


def _progress() -> tuple[list[tuple[int, int | None]], object]:
    seen: list[tuple[int, int | None]] = []
    return seen, lambda done, total: seen.append((done, total))


def test_plain_download(server: FileServer, tmp_path: Path) -> None:
    seen, progress = _progress()
    got = fetch(server.url, tmp_path / "x.h5ad", progress=progress, timeouts=FAST)
    assert got.sha256 == server.sha256 == hashlib.sha256((tmp_path / "x.h5ad").read_bytes()
                                                         ).hexdigest()
    assert seen[0] == (0, SIZE) and seen[-1] == (SIZE, SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5ad"]  # no .part, no state


def test_dropped_connection_resumes_in_the_same_call(server: FileServer, tmp_path: Path) -> None:
    server.plan = ["drop:1500000", "drop:700000"]
    seen, progress = _progress()
    got = fetch(server.url, tmp_path / "x.h5ad", progress=progress, timeouts=FAST)
    assert got.sha256 == server.sha256 and got.size == SIZE
    gets = [entry for entry in server.log if entry[0] == "GET"]
    assert gets == [("GET", None, None), ("GET", "bytes=1500000-", '"v1"'),
                    ("GET", "bytes=2200000-", '"v1"')]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never went back


def test_stalled_server_fails_on_time_then_resumes(server: FileServer, tmp_path: Path) -> None:
    server.plan = ["stall:1000000"]
    dest = tmp_path / "x.h5ad"
    started = time.monotonic()
    with pytest.raises(CensusError) as info:
        fetch(server.url, dest, timeouts=FAST)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "stopped answering" in message and "0.5 s" in message and "resume" in message
    assert "\n" not in message
    assert not dest.exists() and part_path(dest).stat().st_size == 1000000

    got = fetch(server.url, dest, timeouts=FAST)  # the next attempt continues
    assert got.sha256 == server.sha256
    assert server.log[-1] == ("GET", "bytes=1000000-", '"v1"')


def test_server_that_never_answers(server: FileServer, tmp_path: Path) -> None:
    server.plan = ["silent"]
    started = time.monotonic()
    with pytest.raises(CensusError, match=r"stopped answering: no data for 0\.5 s"):
        fetch(server.url, tmp_path / "x.h5ad", timeouts=FAST)
    assert time.monotonic() - started < 5


def test_keeps_dropping_without_progress_gives_up(server: FileServer, tmp_path: Path) -> None:
    server.plan = ["drop:1000", *["drop:0"] * 10]
    with pytest.raises(CensusError, match=r"keeps dropping .* at 1000 bytes: run the download "
                                          "again to resume"):
        fetch(server.url, tmp_path / "x.h5ad", timeouts=FAST)


def test_server_ignoring_range_restarts_cleanly(server: FileServer, tmp_path: Path) -> None:
    server.plan = ["drop:1000000", "ignore-range"]
    got = fetch(server.url, tmp_path / "x.h5ad", timeouts=FAST)
    assert got.sha256 == server.sha256 and got.size == SIZE


def test_changed_file_is_not_spliced(server: FileServer, tmp_path: Path) -> None:
    """A part of an older version is dropped, not completed with bytes of the new one."""
    dest = tmp_path / "x.h5ad"
    server.plan = ["stall:1000000"]
    with pytest.raises(CensusError):
        fetch(server.url, dest, timeouts=FAST)
    server.data = os.urandom(SIZE)
    server.etag = '"v2"'
    got = fetch(server.url, dest, timeouts=FAST)
    assert got.sha256 == server.sha256
    assert server.log[-1] == ("GET", None, None)


def test_interrupted_by_the_caller_resumes(server: FileServer, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop(done: int, total: int | None) -> None:
        if done > 2_000_000:
            raise Stop

    dest = tmp_path / "x.h5ad"
    with pytest.raises(Stop):
        fetch(server.url, dest, progress=stop, timeouts=FAST)
    have = part_path(dest).stat().st_size
    seen, progress = _progress()
    assert fetch(server.url, dest, progress=progress, timeouts=FAST).sha256 == server.sha256
    assert seen[0] == (have, SIZE)


def _b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


@pytest.mark.parametrize("style", ["repr-digest", "amz-sha256", "s3-etag"])
def test_published_checksum_is_verified(server: FileServer, tmp_path: Path, style: str) -> None:
    if style == "repr-digest":
        server.headers = {"Repr-Digest": f"sha-256=:{_b64(server.sha256)}:"}
    elif style == "amz-sha256":
        server.headers = {"x-amz-checksum-sha256": _b64(server.sha256)}
    else:
        server.etag = f'"{hashlib.md5(server.data).hexdigest()}"'
        server.headers = {"x-amz-request-id": "TX0001"}
    server.plan = ["drop:2000000"]  # the sums must also cover the bytes of the first attempt
    got = fetch(server.url, tmp_path / "x.h5ad", timeouts=FAST)
    assert got.verified == (("md5",) if style == "s3-etag" else ("sha256",))


def test_checksum_mismatch_keeps_nothing(server: FileServer, tmp_path: Path) -> None:
    server.headers = {"Repr-Digest": f"sha-256=:{_b64(hashlib.sha256(b'other').hexdigest())}:"}
    with pytest.raises(CensusError, match=r"is corrupt \(sha256 .* nothing was kept"):
        fetch(server.url, tmp_path / "x.h5ad", timeouts=FAST)
    assert list(tmp_path.iterdir()) == []


def test_plain_etag_is_not_mistaken_for_a_checksum(server: FileServer, tmp_path: Path) -> None:
    server.etag = '"0123456789abcdef0123456789abcdef"'  # 32 hex, but not from S3
    assert fetch(server.url, tmp_path / "x.h5ad", timeouts=FAST).verified == ()


def test_server_without_head_still_verifies_size(server: FileServer, tmp_path: Path) -> None:
    server.head_status = 405
    server.plan = ["drop:1000000"]
    seen, progress = _progress()
    got = fetch(server.url, tmp_path / "x.h5ad", progress=progress, timeouts=FAST)
    assert got.sha256 == server.sha256 and seen[-1] == (SIZE, SIZE)
    assert ("GET", "bytes=1000000-", None) in server.log


def test_missing_file_one_line(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(CensusError, match="was not found"):
        fetch(server.url.replace("source", "absent"), tmp_path / "x.h5ad", timeouts=FAST)


def test_refused_connection_one_line(tmp_path: Path, closed_port: int) -> None:
    with pytest.raises(CensusError, match=r"cannot reach .*check the network") as info:
        fetch(f"http://127.0.0.1:{closed_port}/x.h5ad", tmp_path / "x.h5ad", timeouts=FAST)
    assert "\n" not in str(info.value)


def test_cli_stalled_download_is_one_line(census, env_census: Path, server: FileServer,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`cellprompt datasets download` against a stalling mirror: exit 1, one line, on time."""
    from cellprompt.cli.main import main
    from cellprompt.config import reset_settings
    from cellprompt.datasets import census as census_module
    from tests.datasets.fake_census import DATASETS

    monkeypatch.setenv("CELLPROMPT_CENSUS_READ_TIMEOUT_S", "0.5")
    monkeypatch.setenv("CELLPROMPT_CENSUS_H5ADS_URI", server.url.rsplit("/", 1)[0])
    reset_settings()
    server.plan = ["stall:100000"]
    dataset_id = DATASETS[1]["dataset_id"]
    # the server serves one file whatever the name: point the dataset's path at it
    monkeypatch.setattr(census_module, "_source_uri", lambda release, settings, record:
                        server.url)
    monkeypatch.setattr(sys, "argv", ["cellprompt", "datasets", "download", dataset_id])
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 1 and time.monotonic() - started < 10
    assert "stopped answering" in err and err.strip().count("\n") == 0 and "Traceback" not in err
    assert (env_census / f"{dataset_id}.h5ad.part").is_file()
