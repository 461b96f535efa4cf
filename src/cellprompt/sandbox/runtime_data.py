"""What of the sandbox's Python runtime must be invisible inside the sandbox, and why.

The sandbox runs agent code on a read-only bind of a real Python installation (a venv
plus its base). That installation carries more than code: scanpy ships the very public
datasets built-in tasks are made from (`10x_pbmc68k_reduced.h5ad` holds `bulk_labels`,
`louvain`, `phase`…; `krumsiek11.txt` and the `sim_models/` rules regenerate krumsiek11
with its simulation time), and a normal install of cellprompt puts the task files, the
reference code and the truth recipes on the import path. `hidden_paths` names every such
host path so the bwrap backend can overlay it with something empty; `scan_code` and
`forbidden_exposed` let `sandbox build` prove from inside a real sandbox that nothing is left.

The rules are generic rather than a list of known files, because a new library version
(or another single-cell library) can ship a new dataset:
* any file in a single-cell data format, anywhere in the runtime;
* any non-code file inside a single-cell library's own folder (scanpy, anndata, …);
* everything of the `cellprompt` distribution (package, dist-info, `.pth`, editable
  finder, console script, and an editable source tree that lies inside the runtime).
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

# suffixes of single-cell data containers: never legitimate inside a library's install
CELL_DATA_SUFFIXES = (".h5ad", ".h5mu", ".loom", ".mtx", ".mtx.gz", ".zarr", ".rds", ".rda",
                      ".rdata", ".h5seurat")
# libraries whose non-code files may hold (or regenerate) a single-cell dataset
CELL_PACKAGES = ("scanpy", "anndata", "scvelo", "squidpy", "cellrank", "scvi", "celltypist",
                 "decoupler", "mudata", "muon", "pertpy", "palantir", "scirpy", "gseapy",
                 "omnipath", "liana", "infercnvpy", "pydeseq2", "harmonypy", "bbknn", "scrublet",
                 "doubletdetection", "scib", "spatialdata", "scanorama", "phate", "wot",
                 "cellxgene_census", "tiledbsoma", "sc_toolbox", "scmappy", "moscot", "ehrapy")
# files that are code or packaging, not data, inside those libraries
CODE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pyd", ".pxd", ".pyx", ".typed", ".c", ".h",
                 ".cpp")
# suffixes listed (not refused) by `sandbox build`: data that cannot hold a task's truth
DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".npz", ".npy", ".h5", ".hdf5",
                 ".parquet", ".feather", ".pkl", ".pickle", ".arff", ".arff.gz", ".json.gz",
                 ".dat", ".mat", ".gz", ".bz2", ".xz", ".zip", *CELL_DATA_SUFFIXES)
SELF = "cellprompt"


def _runtime_info(python: Path) -> dict[str, list[str]]:
    """The interpreter's own view of its prefixes and site folders (it may be another venv)."""
    code = ("import json, site, sys; print(json.dumps({'prefixes': [sys.prefix, sys.base_prefix, "
            "sys.exec_prefix, sys.base_exec_prefix], 'site': [*site.getsitepackages(), "
            "site.getusersitepackages()], 'path': sys.path}))")
    res = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    if res.returncode != 0:
        return {"prefixes": [str(python.absolute().parent.parent)], "site": [], "path": []}
    return json.loads(res.stdout)


def runtime_prefixes(python: Path) -> list[Path]:
    """The folders the sandbox binds for `python`: its venv and its base installation."""
    info = _runtime_info(python)
    found = {Path(p).resolve() for p in info["prefixes"]}
    found |= {python.absolute().parent.parent, python.resolve().parent.parent}
    return sorted(found)


def _site_dirs(python: Path, prefixes: list[Path]) -> list[Path]:
    info = _runtime_info(python)
    dirs = {Path(p) for p in info["site"] if Path(p).is_dir()}
    for prefix in prefixes:
        for lib in ("lib", "lib64"):
            dirs |= {d for d in (prefix / lib).glob("python*/site-packages") if d.is_dir()}
            dirs |= {d for d in (prefix / lib).glob("python*/dist-packages") if d.is_dir()}
    return sorted({d.resolve() for d in dirs})


def _is_cell_data(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(CELL_DATA_SUFFIXES)


def _package_of(path: Path, site: Path) -> str:
    rel = path.relative_to(site).parts
    return rel[0] if rel else ""


def _why(name: str, top: str | None) -> str | None:
    """`forbidden` on plain strings: a file `name` inside top-level entry `top` of a site
    folder (None: not in one). The walk of a whole runtime calls this per file."""
    if _is_cell_data(name):
        return "single-cell data file"
    if top is None:
        return None
    if top == SELF or top.startswith((f"{SELF}-", f"__editable__.{SELF}-",
                                      f"__editable___{SELF}_")):
        return "part of the cellprompt package"
    if top in CELL_PACKAGES and not name.lower().endswith(CODE_SUFFIXES):
        return f"data shipped inside {top}"
    return None


def forbidden(path: Path, site: Path | None = None) -> str | None:
    """Why `path` (a file of the runtime) must be hidden, or None when it may stay visible."""
    if site is None or not path.is_relative_to(site):
        return _why(path.name, None)
    top = _package_of(path, site)
    if "__pycache__" in path.parts and top in CELL_PACKAGES:  # byte-code is code
        return _why(path.name, None)
    return _why(path.name, top)


def _editable_sources(site: Path, prefixes: list[Path]) -> list[Path]:
    """Source trees an editable cellprompt install points at, when they lie inside the runtime."""
    found: list[Path] = []
    for pth in site.glob(f"*{SELF}*.pth"):
        for line in pth.read_text(errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "import ")):
                continue
            target = Path(line)
            if target.is_dir() and any(target.resolve().is_relative_to(p) for p in prefixes):
                found.append(target.resolve() / SELF if (target / SELF).is_dir()
                             else target.resolve())
    return found


def _walk_site(site: Path) -> list[Path]:
    hidden: list[Path] = []
    for entry in site.iterdir():
        if forbidden(entry, site) == "part of the cellprompt package":
            hidden.append(entry)  # the whole folder or file: one overlay
            continue
        if entry.is_file() and _is_cell_data(entry.name):
            hidden.append(entry)
            continue
        if not entry.is_dir() or entry.is_symlink():
            continue
        # strings, not Paths, per file: a runtime holds ~100k files, walked once per process
        for root, dirs, files in os.walk(entry):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for d in list(dirs):
                if d.lower().endswith(".zarr"):
                    hidden.append(Path(root, d))
                    dirs.remove(d)
            for f in files:
                if _why(f, entry.name) and not os.path.islink(os.path.join(root, f)):
                    hidden.append(Path(root, f))
    return hidden


@lru_cache(maxsize=8)
def _hidden_cached(python: str, stamp: tuple[tuple[str, int], ...]) -> tuple[Path, ...]:
    exe = Path(python)
    prefixes = runtime_prefixes(exe)
    hidden: list[Path] = []
    for site in _site_dirs(exe, prefixes):
        hidden += _walk_site(site)
        hidden += _editable_sources(site, prefixes)
    for prefix in prefixes:
        script = prefix / "bin" / SELF
        if script.is_file():
            hidden.append(script)
    return tuple(sorted(set(hidden)))


def _stamp(python: Path) -> tuple[tuple[str, int], ...]:
    """Modification times of the site folders: installing a package invalidates the cache."""
    base = python.absolute().parent.parent
    sites = sorted(base.glob("lib*/python*/site-packages"))
    return tuple((str(s), s.stat().st_mtime_ns) for s in sites)


def hidden_paths(python: Path) -> list[Path]:
    """Every host path inside `python`'s runtime that must be invisible in the sandbox.

    Files and folders; the caller overlays each (an empty read-only tmpfs for a folder,
    an empty file for a file). Cached per runtime until a site folder changes.
    """
    return list(_hidden_cached(str(python.absolute()), _stamp(python)))


# -- the check run inside a real sandbox --------------------------------------------------

def scan_code() -> str:
    """Agent-side code listing every non-empty data file the runtime shows, as one JSON line.

    It also tries the two cheats the rules exist for (scanpy's bundled copy and
    `import cellprompt`), so a rule that misses a new location still shows up.
    """
    return f"""
import json, os, site, sys, importlib.util
suffixes = {DATA_SUFFIXES!r}
cell_packages = {CELL_PACKAGES!r}
code = {CODE_SUFFIXES!r}
roots = sorted({{os.path.realpath(p) for p in [*site.getsitepackages(), *sys.path] if os.path.isdir(p)}})
found = set()
for root in roots:
    for dirpath, dirs, files in os.walk(root):
        # another root (site-packages inside lib/python3.x) is listed under its own name
        dirs[:] = [d for d in dirs if d != "__pycache__" and os.path.join(dirpath, d) not in roots]
        rel = os.path.relpath(dirpath, root).split(os.sep)
        for f in files:
            p = os.path.join(dirpath, f)
            low = f.lower()
            in_cell = rel[0] in cell_packages and not low.endswith(code)
            if (low.endswith(suffixes) or in_cell or rel[0].startswith("cellprompt")
                    or low.startswith(("cellprompt", "__editable__.cellprompt"))):
                try:
                    if os.path.isfile(p) and os.path.getsize(p) > 0:
                        found.add((root, p))
                except OSError:
                    pass
cheats = []
try:
    import scanpy as _sc
    _sc.datasets.pbmc68k_reduced()
    cheats.append("scanpy.datasets.pbmc68k_reduced() loads")
except Exception:
    pass
if importlib.util.find_spec("cellprompt") is not None:
    cheats.append("cellprompt is importable")
print(json.dumps({{"files": sorted(found), "cheats": cheats}}))
"""


def forbidden_exposed(scan: dict[str, Any]) -> list[str]:
    """From `scan_code`'s output: the visible files (and cheats) that must not be there."""
    bad: list[str] = list(scan.get("cheats") or [])
    for root, path in scan.get("files") or []:
        p, r = Path(path), Path(root)
        why = forbidden(p, r if p.is_relative_to(r) else None)
        if why is None and (p.name.startswith(SELF) or f"/{SELF}/" in path):
            why = "part of the cellprompt package"
        if why:
            bad.append(f"{path} ({why})")
    return bad


def exposed_summary(scan: dict[str, Any], limit: int = 8) -> str:
    """The allowed data files, counted per top-level package, for the build's report."""
    counts: dict[str, int] = {}
    for root, path in scan.get("files") or []:
        rel = Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(path)
        parts = rel.parts
        if "site-packages" in parts[:-1]:  # the base installation's packages, by package
            parts = parts[parts.index("site-packages") + 1:]
        top = parts[0] if parts else path
        counts[top] = counts.get(top, 0) + 1
    if not counts:
        return "no data files"
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v}" for k, v in ranked[:limit])
    more = f", +{len(ranked) - limit} more packages" if len(ranked) > limit else ""
    return f"{sum(counts.values())} data files ({shown}{more})"
