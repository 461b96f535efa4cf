"""Fetching one file by URI into `<dest>.part`, resumable, hashed on the fly, renamed when whole.

Three sources cover what Census release directories point at: `s3://` (the public
buckets, read anonymously), `http(s)://` (mirrors; resumed with Range requests) and
`file://` or plain paths (local copies).
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from cellprompt.errors import CensusError, DatasetError

Progress = Callable[[int, "int | None"], None]

CHUNK = 1 << 20
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
# Leave room for the metadata JSON and the filesystem's own needs.
DISK_MARGIN_BYTES = 16 << 20


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _local_path(uri: str) -> Path | None:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri)
    return None


@contextmanager
def _open_remote(uri: str, offset: int, region: str | None
                 ) -> Iterator[tuple[Iterator[bytes], int | None, int]]:
    """Yield (chunks from `offset` on, total size, offset actually honoured)."""
    local = _local_path(uri)
    scheme = urllib.parse.urlparse(uri).scheme
    if local is not None:
        if not local.is_file():
            raise CensusError(f"source file {local} for the Census dataset does not exist: "
                              "check the release directory's h5ads location")
        total = local.stat().st_size
        with local.open("rb") as fh:
            fh.seek(min(offset, total))
            yield _chunks(fh), total, min(offset, total)
    elif scheme in ("http", "https"):
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with httpx.Client(timeout=timeout, follow_redirects=True) as client, \
                client.stream("GET", uri, headers=headers) as resp:
            if resp.status_code == 416:  # nothing left past `offset`: start again
                raise _RangeRejected
            if resp.status_code == 404:
                raise CensusError(f"the Census source file {uri} was not found (HTTP 404)")
            resp.raise_for_status()
            honoured = offset if resp.status_code == 206 else 0
            length = resp.headers.get("content-length")
            total = honoured + int(length) if length is not None else None
            yield resp.iter_bytes(CHUNK), total, honoured
    elif scheme == "s3":
        import s3fs

        fs = s3fs.S3FileSystem(
            anon=True, client_kwargs={"region_name": region} if region else {},
            config_kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
                           "retries": {"max_attempts": 2}},
        )
        total = int(fs.size(uri))
        with fs.open(uri, "rb", block_size=CHUNK) as fh:
            fh.seek(min(offset, total))
            yield _chunks(fh), total, min(offset, total)
    else:
        raise CensusError(f"cannot download {uri}: unsupported scheme {scheme!r} "
                          "(s3://, http(s)://, file:// and paths are supported)")


class _RangeRejected(Exception):
    pass


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    while block := fh.read(CHUNK):
        yield block


def remote_size(uri: str, region: str | None) -> int | None:
    """Size of the source before downloading, to check the disk has room."""
    local = _local_path(uri)
    if local is not None:
        return local.stat().st_size if local.is_file() else None
    if urllib.parse.urlparse(uri).scheme in ("http", "https"):
        resp = httpx.head(uri, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                          follow_redirects=True)
        if resp.status_code == 404:
            raise CensusError(f"the Census source file {uri} was not found (HTTP 404)")
        length = resp.headers.get("content-length") if resp.is_success else None
        return int(length) if length is not None else None
    with _open_remote(uri, 0, region) as (_, total, _offset):
        return total


def check_disk_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN_BYTES > free:
        raise DatasetError(
            f"not enough disk space in {folder}: the download needs {needed / 1e6:.1f} MB and "
            f"{free / 1e6:.1f} MB are free; free some space or choose another folder with --to"
        )


def fetch(uri: str, dest: Path, *, region: str | None = None,
          progress: Progress | None = None) -> Fetched:
    """Download `uri` to `dest`, resuming a `.part` left by an earlier attempt.

    The final name only ever appears once every byte is on disk, so a crash or
    Ctrl-C leaves at most `dest.part` (which the next call resumes).
    """
    part = part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    total = remote_size(uri, region)
    if total is not None:
        if have > total:
            part.unlink()
            have = 0
        check_disk_space(dest.parent, total - have)
    try:
        return _fetch_from(uri, dest, part, have, region, progress)
    except _RangeRejected:
        part.unlink(missing_ok=True)
        return _fetch_from(uri, dest, part, 0, region, progress)


def _fetch_from(uri: str, dest: Path, part: Path, have: int, region: str | None,
                progress: Progress | None) -> Fetched:
    digest = hashlib.sha256()
    with _open_remote(uri, have, region) as (chunks, total, honoured):
        if honoured:
            with part.open("rb") as fh:  # hash what is already there so the sum covers the file
                remaining = honoured
                while remaining and (block := fh.read(min(CHUNK, remaining))):
                    digest.update(block)
                    remaining -= len(block)
        done = honoured
        mode = "r+b" if honoured else "wb"
        with part.open(mode) as out:
            out.seek(honoured)
            out.truncate()
            if progress:
                progress(done, total)
            for block in chunks:
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
            out.flush()
    if total is not None and done != total:
        raise CensusError(f"download of {uri} stopped at {done} of {total} bytes: run the "
                          "download again to resume")
    part.replace(dest)
    return Fetched(path=dest, size=done, sha256=digest.hexdigest())

