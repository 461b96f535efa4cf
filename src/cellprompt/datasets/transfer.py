"""Fetching one file by URI into `<dest>.part`, resumable, verified, renamed only when whole.

Three sources cover what Census release directories point at: `s3://` (the public
buckets, read anonymously), `http(s)://` (mirrors) and `file://` or plain paths (local
copies). Multi-GB source files make three things matter:

* **Nothing waits forever.** Every request has a connect and a read timeout; a server
  that stops sending fails with a one-line `CensusError` naming how long it was silent.
* **Nothing is fetched twice.** A dropped connection is resumed with a Range request
  from the bytes already on disk, in the same call and across calls: `<dest>.part.json`
  records which remote file (URI, ETag/Last-Modified, size) the part belongs to, and
  `If-Range` makes the server send the whole file again if it changed meanwhile.
* **Nothing unverified is kept.** The size must match, and so must a checksum when the
  source publishes one (an `x-amz-checksum-sha256`/`Repr-Digest`/`Digest` header, or
  the MD5 an S3 ETag is for a single-part upload); otherwise the part is deleted.

Progress goes to a callback `(bytes_done, bytes_total | None)`; this module never prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from cellprompt.errors import CensusError, DatasetError

Progress = Callable[[int, "int | None"], None]

CHUNK = 1 << 20
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
# A connection that drops is resumed; this many drops in a row with no new byte give up.
MAX_STALLED_RESUMES = 3
RESUME_BACKOFF_S = 0.5
# Leave room for the metadata JSON and the filesystem's own needs.
DISK_MARGIN_BYTES = 16 << 20
_MD5_ETAG = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{32})"?$')


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for a connection, and for the next bytes once connected."""

    connect: float = CONNECT_TIMEOUT_S
    read: float = READ_TIMEOUT_S

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read, connect=self.connect)


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str
    verified: tuple[str, ...] = ()  # checksums the source published and the file matched


@dataclass(frozen=True)
class Remote:
    """What the source says about the file before any byte is fetched."""

    size: int | None
    validator: str | None = None  # ETag (preferred) or Last-Modified: identifies this version
    checksums: dict[str, str] = field(default_factory=dict)  # "sha256"/"md5" -> hex digest


class _Dropped(Exception):
    """The connection ended before the file did: resume from what is on disk."""


class _Restart(Exception):
    """The source will not continue from our offset (or the file changed): start over."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _state_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def _local_path(uri: str) -> Path | None:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri)
    return None


def _scheme(uri: str) -> str:
    return urllib.parse.urlparse(uri).scheme


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- what the source publishes

def _b64_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value.strip().strip(":"), validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _http_checksums(headers: httpx.Headers) -> dict[str, str]:
    """Checksums in standard headers; an ETag counts only when S3 says it is a plain MD5."""
    found: dict[str, str] = {}
    if (value := headers.get("x-amz-checksum-sha256")) and (hexed := _b64_hex(value)):
        found["sha256"] = hexed
    for header in ("repr-digest", "digest"):  # RFC 9530 `sha-256=:…:`, RFC 3230 `SHA-256=…`
        for item in (headers.get(header) or "").split(","):
            algo, _, value = item.strip().partition("=")
            if algo.lower() in ("sha-256", "sha256") and (hexed := _b64_hex(value)):
                found.setdefault("sha256", hexed)
    from_s3 = headers.get("server", "").lower() == "amazons3" or "x-amz-request-id" in headers
    etag = headers.get("etag") or ""
    if from_s3 and (m := _MD5_ETAG.match(etag)) and "-" not in etag:
        found["md5"] = m.group(1).lower()
    return found


def _client(timeouts: Timeouts) -> httpx.Client:
    return httpx.Client(timeout=timeouts.httpx(), follow_redirects=True,
                        headers={"Accept-Encoding": "identity"})


def _http_remote(uri: str, timeouts: Timeouts) -> Remote:
    with _client(timeouts) as client:
        resp = client.head(uri)
    if resp.status_code in (403, 405, 501):  # no HEAD here: learn the size from the GET
        return Remote(size=None)
    _check_status(resp, uri)
    length = resp.headers.get("content-length")
    etag = resp.headers.get("etag") or ""
    # If-Range needs a strong validator: a weak ETag would make every resume start over
    validator = etag if etag and not etag.startswith("W/") else resp.headers.get("last-modified")
    return Remote(size=int(length) if length is not None else None, validator=validator,
                  checksums=_http_checksums(resp.headers))


def _s3_filesystem(region: str | None, timeouts: Timeouts) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        anon=True, client_kwargs={"region_name": region} if region else {},
        config_kwargs={"connect_timeout": timeouts.connect, "read_timeout": timeouts.read,
                       "retries": {"max_attempts": 2}},
    )


def describe_remote(uri: str, region: str | None = None,
                    timeouts: Timeouts | None = None) -> Remote:
    """Size, version validator and published checksums of `uri`, before downloading it."""
    timeouts = timeouts or Timeouts()
    local = _local_path(uri)
    if local is not None:
        if not local.is_file():
            raise CensusError(f"source file {local} for the Census dataset does not exist: "
                              "check the release directory's h5ads location")
        st = local.stat()
        return Remote(size=st.st_size, validator=f"{st.st_size}-{st.st_mtime_ns}")
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        return _guard(uri, lambda: _http_remote(uri, timeouts), timeouts)
    if scheme == "s3":
        def info() -> Remote:
            meta = _s3_filesystem(region, timeouts).info(uri)
            etag = str(meta.get("ETag") or "")
            m = _MD5_ETAG.match(etag)
            return Remote(size=int(meta["size"]), validator=etag or None,
                          checksums={"md5": m.group(1).lower()} if m and "-" not in etag else {})
        return _guard(uri, info, timeouts)
    raise CensusError(f"cannot download {uri}: unsupported scheme {scheme!r} "
                      "(s3://, http(s)://, file:// and paths are supported)")


def remote_size(uri: str, region: str | None = None) -> int | None:
    """Size of the source before downloading, to check the disk has room."""
    return describe_remote(uri, region).size


# ---------------------------------------------------------------- reading from an offset

def _check_status(resp: httpx.Response, uri: str) -> None:
    if resp.status_code == 404:
        raise CensusError(f"the Census source file {uri} was not found (HTTP 404): check the "
                          "dataset id and Census version")
    if resp.status_code == 416:
        raise _Restart
    if resp.is_error:
        raise CensusError(f"the Census source file {uri} could not be downloaded "
                          f"(HTTP {resp.status_code}): try again later")


def _http_chunks(resp: httpx.Response) -> Iterator[bytes]:
    try:
        yield from resp.iter_raw()  # as received: a drop loses no byte that arrived
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise _Dropped(_first_line(exc)) from None


def _size_from(resp: httpx.Response, honoured: int) -> int | None:
    """The whole file's size as a GET response states it (Content-Range, else Content-Length)."""
    if m := re.fullmatch(r"bytes \d+-\d+/(\d+)", resp.headers.get("content-range", "")):
        return int(m.group(1))
    length = resp.headers.get("content-length")
    return honoured + int(length) if length is not None else None


@contextmanager
def _open_http(client: httpx.Client, uri: str, offset: int, validator: str | None
               ) -> Iterator[tuple[Iterator[bytes], int, int | None]]:
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        with client.stream("GET", uri, headers=headers) as resp:
            _check_status(resp, uri)
            honoured = offset if resp.status_code == 206 else 0
            yield _http_chunks(resp), honoured, _size_from(resp, honoured)
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise _Dropped(_first_line(exc)) from None


@contextmanager
def _open_file(fh_factory: Callable[[], AbstractContextManager[BinaryIO]], offset: int
               ) -> Iterator[tuple[Iterator[bytes], int, int | None]]:
    with fh_factory() as fh:
        fh.seek(offset)
        yield _file_chunks(fh), offset, None


def _file_chunks(fh: BinaryIO) -> Iterator[bytes]:
    while block := fh.read(CHUNK):
        yield block


def _guard(uri: str, call: Callable[[], Any], timeouts: Timeouts) -> Any:
    """Turn transport failures into one-line errors that say what to do."""
    try:
        return call()
    except httpx.ConnectTimeout:
        raise CensusError(f"cannot reach {uri}: no connection within {timeouts.connect:g} s; "
                          "check the network connection") from None
    except httpx.ReadTimeout:
        raise CensusError(f"the server of {uri} stopped answering: no data for "
                          f"{timeouts.read:g} s; run the download again to resume") from None
    except httpx.HTTPError as exc:
        raise CensusError(f"cannot reach {uri} ({_first_line(exc)}): check the network "
                          "connection") from None
    except (CensusError, DatasetError, _Dropped, _Restart):
        raise
    except OSError as exc:
        raise CensusError(f"cannot read {uri} ({_first_line(exc)}): check the network "
                          "connection and try again") from None
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "aiobotocore", "s3fs")):
            raise CensusError(f"cannot read {uri} ({_first_line(exc)}): check the network "
                              "connection and try again") from None
        raise


# ---------------------------------------------------------------- the download itself

def check_disk_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN_BYTES > free:
        raise DatasetError(
            f"not enough disk space in {folder}: the download needs {needed / 1e6:.1f} MB and "
            f"{free / 1e6:.1f} MB are free; free some space or choose another folder with --to"
        )


class _Sink:
    """The `.part` file plus running digests of everything in it, in order."""

    def __init__(self, part: Path, have: int, want_md5: bool) -> None:
        self.part = part
        self.want_md5 = want_md5
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if want_md5 else None
        self.done = 0
        if have:  # hash what is already there so the sums cover the whole file
            with part.open("rb") as fh:
                while block := fh.read(CHUNK):
                    self._digest(block)
        self.fh = part.open("r+b" if have else "wb")
        self.fh.seek(self.done)

    def _digest(self, block: bytes) -> None:
        self.sha256.update(block)
        if self.md5 is not None:
            self.md5.update(block)
        self.done += len(block)

    def write(self, block: bytes) -> None:
        self.fh.write(block)
        self._digest(block)

    def restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if self.want_md5 else None
        self.done = 0

    def close(self) -> None:
        self.fh.flush()
        self.fh.close()


def _resumable(dest: Path, uri: str, remote: Remote) -> int:
    """Bytes of an earlier attempt at this same remote file, or 0 (discarding a stale part)."""
    part, state = part_path(dest), _state_path(dest)
    have = part.stat().st_size if part.exists() else 0
    recorded: dict[str, Any] = {}
    with suppress(OSError, ValueError):
        recorded = json.loads(state.read_text())
    same = recorded == {"uri": uri, "validator": remote.validator, "size": remote.size}
    if have and (not same or (remote.size is not None and have > remote.size)):
        part.unlink()
        have = 0
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"uri": uri, "validator": remote.validator, "size": remote.size}))
    return have


def fetch(uri: str, dest: Path, *, region: str | None = None, progress: Progress | None = None,
          timeouts: Timeouts | None = None) -> Fetched:
    """Download `uri` to `dest`, resuming a `.part` left by an earlier attempt or a dropped link.

    The final name only ever appears once every byte is on disk and verified, so a crash
    or Ctrl-C leaves at most `dest.part` (which the next call resumes).
    """
    timeouts = timeouts or Timeouts()
    dest = Path(dest)
    remote = describe_remote(uri, region, timeouts)
    have = _resumable(dest, uri, remote)
    if remote.size is not None:
        check_disk_space(dest.parent, remote.size - have)
    sink = _Sink(part_path(dest), have, "md5" in remote.checksums)
    try:
        size = _pull(uri, sink, remote, region, progress, timeouts)
    finally:
        sink.close()
    if size is not None and sink.done != size:
        raise CensusError(f"download of {uri} stopped at {sink.done} of {size} bytes: "
                          "run the download again to resume")
    got = {"sha256": sink.sha256.hexdigest(), "md5": sink.md5.hexdigest() if sink.md5 else ""}
    for algo, expected in remote.checksums.items():
        if got[algo] != expected:
            part_path(dest).unlink(missing_ok=True)
            _state_path(dest).unlink(missing_ok=True)
            raise CensusError(f"download of {uri} is corrupt ({algo} {got[algo][:12]}… is not "
                              f"the published {expected[:12]}…): nothing was kept; try again")
    part_path(dest).replace(dest)
    _state_path(dest).unlink(missing_ok=True)
    return Fetched(path=dest, size=sink.done, sha256=got["sha256"],
                   verified=tuple(sorted(remote.checksums)))


def _pull(uri: str, sink: _Sink, remote: Remote, region: str | None,
          progress: Progress | None, timeouts: Timeouts) -> int | None:
    """Copy the rest of the source into `sink`, resuming after drops; return the file's size."""
    local = _local_path(uri)
    scheme = _scheme(uri)
    client = _client(timeouts) if scheme in ("http", "https") else None
    fs = _s3_filesystem(region, timeouts) if scheme == "s3" else None
    fruitless = 0
    try:
        while True:
            start = sink.done
            if client is not None:
                opened = _open_http(client, uri, start, remote.validator)
            elif fs is not None:
                opened = _open_file(lambda: fs.open(uri, "rb", block_size=CHUNK), start)
            else:
                assert local is not None
                opened = _open_file(lambda: local.open("rb"), start)
            try:
                return _guard(uri, partial(_copy, opened, sink, progress, remote.size), timeouts)
            except _Restart:
                if start == 0:
                    raise CensusError(f"the server of {uri} refused to send the file: "
                                      "try again later") from None
                sink.restart()
            except _Dropped as exc:
                fruitless = 0 if sink.done > start else fruitless + 1
                if fruitless >= MAX_STALLED_RESUMES:
                    raise CensusError(f"the connection to {uri} keeps dropping ({exc}) at "
                                      f"{sink.done} bytes: run the download again to resume"
                                      ) from None
                time.sleep(RESUME_BACKOFF_S * fruitless)
    finally:
        if client is not None:
            client.close()


def _copy(opened: AbstractContextManager[tuple[Iterator[bytes], int, int | None]], sink: _Sink,
          progress: Progress | None, total: int | None) -> int | None:
    with opened as (chunks, honoured, stated):
        if honoured != sink.done:  # the server sent the whole file: start it over
            sink.restart()
        total = total if total is not None else stated
        if progress:
            progress(sink.done, total)
        for block in chunks:
            sink.write(block)
            if progress:
                progress(sink.done, total)
        if total is not None and sink.done < total:
            raise _Dropped(f"the body ended at {sink.done} of {total} bytes")
    return total
