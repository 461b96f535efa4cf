"""Nothing in the sandbox's Python runtime reaches a task's truth (issue 12).

scanpy ships pbmc68k_reduced (bulk_labels, louvain, phase, the PCA: the truth of seven
built-in tasks) and krumsiek11 with its simulation rules; a normal install of cellprompt
puts the task files and truth recipes on the import path. Unit tests pin the rules of
`runtime_data`; the sandbox tests prove the overlays (bwrap) and the image (docker) hide
them from real agent code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cellprompt.sandbox.runtime_data import (
    _editable_sources,
    _walk_site,
    forbidden,
    forbidden_exposed,
    hidden_paths,
    scan_code,
)
from tests.conftest import require_sandbox_backend

CHEATS = """
import json, importlib.util
out = {}
import scanpy as sc
for loader in ("pbmc68k_reduced", "krumsiek11", "toggleswitch"):
    try:
        getattr(sc.datasets, loader)()
        out[loader] = "loaded"
    except Exception as exc:
        out[loader] = type(exc).__name__
try:
    import cellprompt
    out["cellprompt"] = "imported"
except Exception as exc:
    out["cellprompt"] = type(exc).__name__
out["spec"] = importlib.util.find_spec("cellprompt") is not None
print(json.dumps(out))
"""


def _fake_site(root: Path) -> Path:
    site = root / "lib" / "python3.11" / "site-packages"
    files = ["cellprompt/__init__.py", "cellprompt/tasks/builtin/t.yaml",
             "cellprompt-0.1.0.dist-info/RECORD", "__editable__.cellprompt-0.1.0.pth",
             "__editable___cellprompt_0_1_0_finder.py", "scanpy/__init__.py",
             "scanpy/datasets/__init__.py", "scanpy/datasets/10x_pbmc68k_reduced.h5ad",
             "scanpy/datasets/krumsiek11.txt", "scanpy/sim_models/krumsiek11_params.txt",
             "scanpy/_utils/compute.cpython-311-x86_64-linux-gnu.so", "anndata/tests/x.json",
             "matplotlib/mpl-data/sample_data/msft.csv", "otherlib/data/atlas.loom",
             "otherlib/__init__.py", "somepkg/store.zarr/.zattrs"]
    for f in files:
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        (site / f).write_text("x")
    (site / "__editable__.cellprompt-0.1.0.pth").write_text(str(root / "src") + "\n")
    (root / "src" / "cellprompt").mkdir(parents=True)
    return site


def test_rules_hide_bundled_data_and_cellprompt_but_not_code(tmp_path: Path) -> None:
    site = _fake_site(tmp_path)
    hidden = {p.relative_to(site).as_posix() for p in _walk_site(site)}
    assert hidden == {
        "cellprompt", "cellprompt-0.1.0.dist-info", "__editable__.cellprompt-0.1.0.pth",
        "__editable___cellprompt_0_1_0_finder.py", "scanpy/datasets/10x_pbmc68k_reduced.h5ad",
        "scanpy/datasets/krumsiek11.txt", "scanpy/sim_models/krumsiek11_params.txt",
        "anndata/tests/x.json", "otherlib/data/atlas.loom", "somepkg/store.zarr"}
    # an editable install's source tree is hidden when it lies inside the runtime
    assert _editable_sources(site, [tmp_path]) == [tmp_path / "src" / "cellprompt"]
    assert _editable_sources(site, [tmp_path / "elsewhere"]) == []
    assert forbidden(site / "matplotlib/mpl-data/sample_data/msft.csv", site) is None
    assert forbidden(site / "scanpy/datasets/__init__.py", site) is None


def test_this_runtime_hides_scanpy_data_and_cellprompt() -> None:
    hidden = hidden_paths(Path(sys.executable))
    names = {p.name for p in hidden}
    assert {"10x_pbmc68k_reduced.h5ad", "krumsiek11.txt"} <= names
    assert any(n.startswith("cellprompt-") and n.endswith(".dist-info") for n in names)
    assert all(p.exists() for p in hidden)
    assert not any(p.suffix in (".py", ".so") and "scanpy" in p.parts for p in hidden)


def test_scan_verdicts() -> None:
    site = "/rt/lib/python3.11/site-packages"
    scan = {"files": [[site, f"{site}/scanpy/datasets/10x_pbmc68k_reduced.h5ad"],
                      [site, f"{site}/statsmodels/datasets/x.csv"],
                      [site, f"{site}/cellprompt/tasks/builtin/a.yaml"]],
            "cheats": ["cellprompt is importable"]}
    bad = forbidden_exposed(scan)
    assert len(bad) == 3 and "statsmodels" not in " ".join(bad)


@pytest.mark.parametrize("backend", ["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def test_agent_code_cannot_load_bundled_data_or_import_cellprompt(backend: str) -> None:
    from cellprompt.sandbox import open_sandbox
    from cellprompt.sandbox.build import check_runtime_data

    require_sandbox_backend(backend)
    with open_sandbox(backend=backend) as sb:
        r = sb.execute(CHEATS, timeout=180)
        assert r.final_status == "ok", r.text()
        out = json.loads(r.text().strip().splitlines()[-1])
        assert "loaded" not in out.values(), out
        assert out["cellprompt"] != "imported" and out["spec"] is False
        summary = check_runtime_data(sb, backend)  # what `sandbox build` reports
    assert "data files" in summary


def test_scan_code_is_valid_python() -> None:
    compile(scan_code(), "<scan>", "exec")
