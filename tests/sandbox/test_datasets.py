"""Datasets are bound read-only at /data/<name> (never copied) in every isolating backend."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from cellprompt.sandbox import state
from tests.sandbox.conftest import open_for


@pytest.mark.parametrize("backend", ["bwrap", "docker"])
def test_dataset_is_readable_and_read_only(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "tiny.h5ad"
    ad.AnnData(X=np.arange(12, dtype=np.float32).reshape(3, 4)).write_h5ad(path)
    with open_for(backend, datasets=[path], memory="1g") as sb:
        r = sb.execute("import anndata\na = anndata.read_h5ad('/data/tiny.h5ad')\n"
                       "print(a.shape, float(a.X.sum()))\n"
                       "try:\n    open('/data/tiny.h5ad', 'ab')\n    print('WRITABLE')\n"
                       "except OSError:\n    print('read-only')", timeout=120)
        assert r.text() == "(3, 4) 66.0\nread-only", r.text()


def test_tcp_endpoint_with_token(tmp_path: Path) -> None:
    with open_for("local", tcp=True, memory="1g") as sb:
        endpoint = sb.launched.endpoint
        assert endpoint.uds is None and endpoint.host == "127.0.0.1" and endpoint.port
        assert sb.execute("print('over tcp')").text() == "over tcp"
        import httpx

        url = f"http://127.0.0.1:{endpoint.port}/execute"
        assert httpx.post(url, json={"code": "1"}).status_code == 401


def test_garbage_collection_stops_the_sandbox() -> None:
    import gc

    sb = open_for("local", memory="1g")
    folder, launched = state.sandbox_dir(sb.id), sb.launched
    del sb
    gc.collect()
    assert not folder.exists() and not launched.alive()
