"""Reaching one CZ CELLxGENE Census release: settings, timeouts, errors, versions, opening.

Every network location comes from settings, so the same code reads the public
Census or a local copy (tests build one):

* `census_release_directory_url` / `census_mirrors_url`: the `release.json` and
  `mirrors.json` cellxgene_census bootstraps from (http/https);
* `census_mirror`: which mirror `open_soma` uses;
* `census_uri` (+ `census_h5ads_uri`): open one SOMA collection directly, no directory.

Every network call has a connect and a read timeout: `cellxgene_census` fetches its
release directory with `requests.get(url)` and no timeout, so while it runs its module
sees a `requests` that adds one; TileDB's S3 reads get theirs from `_tiledb_config`;
downloads go through `transfer.fetch`. A quick reachability probe makes "no network"
fail in seconds, and a deadline backs up DNS lookups, which no timeout covers.

What is asked of a release (listing, showing, downloading) lives in `census.py`.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from typing import Any, TypeVar

import httpx

from cellprompt.config import Settings, get_settings
from cellprompt.datasets.models import CensusVersion
from cellprompt.datasets.transfer import Timeouts
from cellprompt.errors import CensusError, DatasetError

T = TypeVar("T")

DEFAULT_VERSION = "stable"
PROBE_TIMEOUT_S = 3.0
DIRECTORY_TIMEOUT_S = 20.0


def timeouts(settings: Settings) -> Timeouts:
    """The connect/read timeouts of every Census request (CELLPROMPT_CENSUS_*_TIMEOUT_S)."""
    return Timeouts(connect=settings.census_connect_timeout_s, read=settings.census_read_timeout_s)


def _tiledb_config(settings: Settings) -> dict[str, Any]:
    """Bounded buffers (the cellxgene_census default is 1 GiB per read) and S3 timeouts."""
    t = timeouts(settings)
    return {
        "py.init_buffer_bytes": 64 << 20,
        "soma.init_buffer_bytes": 64 << 20,
        "vfs.s3.connect_timeout_ms": int(t.connect * 1000),
        "vfs.s3.request_timeout_ms": int(t.read * 1000),
        "vfs.s3.connect_max_tries": 2,
    }


# ---------------------------------------------------------------- configuration and errors

def offline(where: str, reason: str) -> CensusError:
    return CensusError(
        f"cannot reach the CELLxGENE Census at {where} ({reason}): check the network "
        "connection, or point CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL / CELLPROMPT_CENSUS_URI "
        "at a reachable copy"
    )


def _host_port(url: str) -> tuple[str, int] | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.hostname:
        return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if parsed.scheme == "s3":
        return "s3.amazonaws.com", 443
    return None


def _with_deadline(fn: Callable[[], T], seconds: float, what: str, where: str) -> T:
    """Run `fn` in a daemon thread; give up after `seconds` (DNS and requests have no timeout)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"census-{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise offline(where, f"no answer to {what} within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail in `timeout` seconds when the host behind `url` cannot be reached at all."""
    target = _host_port(url)
    if target is None:
        return

    def connect() -> None:
        with socket.create_connection(target, timeout=timeout):
            pass

    try:
        _with_deadline(connect, timeout + 0.5, "a connection", target[0])
    except OSError as exc:
        raise offline(f"{target[0]}:{target[1]}", exc.strerror or type(exc).__name__) from None


class _TimedRequests:
    """`requests` as cellxgene_census sees it, except that `get` always has a timeout."""

    def __init__(self, timeouts: Timeouts) -> None:
        import requests

        self._requests = requests
        self._timeout = (timeouts.connect, timeouts.read)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._requests, name)

    def get(self, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return self._requests.get(url, **kwargs)


@contextmanager
def _configured(settings: Settings) -> Iterator[None]:
    """Point cellxgene_census at the configured directory/mirrors, with timeouts, quietly."""
    import cellxgene_census._release_directory as rd

    saved = (rd.CELL_CENSUS_RELEASE_DIRECTORY_URL, rd.CELL_CENSUS_MIRRORS_DIRECTORY_URL)
    saved_requests = rd.requests
    rd.requests = _TimedRequests(timeouts(settings))  # type: ignore[assignment]
    logger = logging.getLogger("cellxgene_census")
    saved_level = logger.level
    if settings.census_release_directory_url:
        rd.CELL_CENSUS_RELEASE_DIRECTORY_URL = settings.census_release_directory_url
    if settings.census_mirrors_url:
        rd.CELL_CENSUS_MIRRORS_DIRECTORY_URL = settings.census_mirrors_url
    logger.setLevel(logging.ERROR)  # it logs "stable is currently ..." to stderr on every open
    try:
        yield
    except CensusError:
        raise
    except DatasetError:
        raise
    except Exception as exc:
        raise _translate(exc, rd.CELL_CENSUS_RELEASE_DIRECTORY_URL, timeouts(settings)) from None
    finally:
        rd.CELL_CENSUS_RELEASE_DIRECTORY_URL, rd.CELL_CENSUS_MIRRORS_DIRECTORY_URL = saved
        rd.requests = saved_requests
        logger.setLevel(saved_level)


def _translate(exc: Exception, directory_url: str, limits: Timeouts) -> CensusError:
    import requests

    host = urllib.parse.urlparse(directory_url).netloc or directory_url
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, requests.Timeout):
        return offline(host, f"no answer within {limits.read:g} s")
    if isinstance(exc, requests.HTTPError):
        return CensusError(f"the CELLxGENE Census release directory at {directory_url} answered "
                           f"{first}: check CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL")
    if isinstance(exc, requests.RequestException | httpx.TransportError | ConnectionError):
        return offline(host, first)
    return CensusError(f"CELLxGENE Census error: {first}")


def _directory_url(settings: Settings) -> str:
    import cellxgene_census._release_directory as rd

    return settings.census_release_directory_url or rd.CELL_CENSUS_RELEASE_DIRECTORY_URL


def _directory(settings: Settings, *, retracted: bool | None) -> dict[str, Any]:
    import cellxgene_census

    url = _directory_url(settings)
    probe(url)
    return _with_deadline(
        lambda: cellxgene_census.get_census_version_directory(retracted=retracted),
        max(DIRECTORY_TIMEOUT_S, sum(astuple(timeouts(settings))) + 1.0),
        "the release directory request", url)


# ---------------------------------------------------------------- versions

def census_versions(include_retracted: bool = False, *,
                    settings: Settings | None = None) -> list[CensusVersion]:
    """Releases newest first; aliases (stable, latest, V#) are folded into their release."""
    settings = settings or get_settings()
    if settings.census_uri:
        raise CensusError("CELLPROMPT_CENSUS_URI opens one Census directly, so there are no "
                          "versions to list: unset it to use the release directory")
    with _configured(settings):
        directory = _directory(settings, retracted=None if include_retracted else False)
    by_build: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, desc in directory.items():
        by_build.setdefault(desc["release_build"], []).append((name, desc))
    versions = []
    for build, entries in by_build.items():
        names = [n for n, _ in entries]
        name = build if build in names else sorted(names)[-1]
        desc = dict(entries[0][1])
        flags = desc.get("flags", {})
        versions.append(CensusVersion(
            name=name, build=build, aliases=sorted(n for n in names if n != name),
            lts=bool(flags.get("lts", False)), retracted=bool(flags.get("retracted", False)),
            retraction=desc.get("retraction"),
            soma_uri=desc.get("soma", {}).get("uri") or desc.get("soma", {}).get("relative_uri"),
            h5ads_uri=desc.get("h5ads", {}).get("uri"),
        ))
    return sorted(versions, key=lambda v: v.build, reverse=True)


# ---------------------------------------------------------------- opening one release

@dataclass
class Release:
    """One open release: its SOMA collection, its build date and where its source files are."""

    census: Any  # tiledbsoma.Collection
    build: str
    h5ads_uri: str | None  # folder of the source .h5ad files
    h5ads_region: str | None


def _summary_build(census: Any) -> str | None:
    info = census["census_info"]
    if "summary" not in info:
        return None
    df = info["summary"].read(column_names=["label", "value"],
                              value_filter="label == 'census_build_date'").concat().to_pandas()
    return str(df["value"].iloc[0]) if len(df) else None


@contextmanager
def open_release(settings: Settings, version: str) -> Iterator[Release]:
    """The open release `version` (or the collection at CELLPROMPT_CENSUS_URI)."""
    import cellxgene_census

    with _configured(settings):
        if settings.census_uri:
            probe(settings.census_uri)
            census = cellxgene_census.open_soma(uri=settings.census_uri,
                                                tiledb_config=_tiledb_config(settings))
            build, h5ads = None, {"uri": settings.census_h5ads_uri}
        else:
            directory = _directory(settings, retracted=False)
            if version not in directory:
                raise CensusError(f"unknown or retracted Census version {version!r}: list "
                                  "versions with `cellprompt datasets versions`")
            build, h5ads = directory[version]["release_build"], directory[version].get("h5ads", {})
            probe(settings.census_mirrors_url or _directory_url(settings))
            census = cellxgene_census.open_soma(census_version=version,
                                                mirror=settings.census_mirror,
                                                tiledb_config=_tiledb_config(settings))
        if settings.census_h5ads_uri:
            h5ads = {"uri": settings.census_h5ads_uri}
        with census:
            yield Release(census=census, build=build or _summary_build(census) or version,
                          h5ads_uri=(h5ads or {}).get("uri"),
                          h5ads_region=(h5ads or {}).get("s3_region"))
