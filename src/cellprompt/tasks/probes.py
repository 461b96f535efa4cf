"""Generic cheat probes: agent code that tries to reach a task's answer without the analysis.

Every task runs every probe in a real sandbox, exactly as agent code would run. A probe
prints its answer as the last JSON line (as any agent does) plus `_leaks`: what it could
reach that it should not. A probe *succeeds* — the task is broken — when it reports a
leak or when its answer passes the graders; `tasks validate` expects every probe to fail.

* `cheat-bundled-data`: load a library's bundled copy of a public dataset (scanpy's
  loaders, any single-cell file in the runtime) and join it to the agent's copy by id.
* `cheat-import-cellprompt`: import cellprompt (task files, truth recipes, reference code).
* `cheat-filesystem-search`: search every readable file outside /data for the agent
  copy's cell ids (truth files are keyed by them) or for task files.
* `cheat-row-order` / `cheat-cell-ids`: write every per-cell answer from the row position
  or from the digits in the cell id (krumsiek11's ids were its simulation time).

The first three look at the sandbox's runtime, which is the same for every task (only
`/data` differs, and they never read it but for the ids). So they are *shared*: one run
with every task's copy mounted (`/data/<i>.h5ad`) answers them for all tasks at once; each
reports leaks that hold for any task (`_leaks`) and leaks tied to one copy's ids
(`_by_file`). The last two write a task's own answer files and run per task.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellprompt.tasks.spec import Task

_READ_IDS = """
import glob, json, os, re
import h5py
def _ids(path):
    with h5py.File(path, "r") as f:
        obs = f["obs"]
        key = obs.attrs.get("_index", "_index")
        key = key.decode() if isinstance(key, bytes) else key
        return [v.decode() if isinstance(v, bytes) else str(v) for v in obs[key][()]]
DATA = sorted(glob.glob("/data/*.h5ad"))
IDS_BY_FILE = {os.path.basename(p): _ids(p) for p in DATA}
IDS = IDS_BY_FILE[os.path.basename(DATA[0])] if DATA else []
ANSWERS = {answers!r}
leaks = []
by_file = {name: [] for name in IDS_BY_FILE}
"""

_BUNDLED = _READ_IDS + """
import scanpy as sc
for loader in ("pbmc68k_reduced", "krumsiek11", "toggleswitch"):  # the offline ones
    try:
        bundled = getattr(sc.datasets, loader)()
    except Exception:
        continue
    names = set(map(str, bundled.obs_names))
    for name, ids in IDS_BY_FILE.items():
        by_file[name].append(f"sc.datasets.{loader}() loads ({bundled.n_obs} cells, "
                             f"{len(names & set(ids))} ids shared)")
    if not IDS_BY_FILE:
        leaks.append(f"sc.datasets.{loader}() loads ({bundled.n_obs} cells)")
import site, sys
roots = {os.path.realpath(p) for p in [*site.getsitepackages(), *sys.path] if os.path.isdir(p)}
for root in sorted(roots):
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith((".h5ad", ".loom", ".mtx", ".mtx.gz", ".h5mu")):
                p = os.path.join(dirpath, f)
                if os.path.getsize(p) > 0:
                    leaks.append(f"{p} is readable")
print(json.dumps({"_leaks": sorted(set(leaks)), "_by_file": by_file}))
"""

_IMPORT = _READ_IDS + """
import importlib, importlib.util, importlib.metadata, sys
try:
    importlib.import_module("cellprompt")
    leaks.append("import cellprompt works")
except Exception:
    pass
try:
    if importlib.util.find_spec("cellprompt") is not None:
        leaks.append("cellprompt is on the import path")
except Exception:
    pass
try:
    dist = importlib.metadata.distribution("cellprompt")
    if dist.read_text("METADATA") or dist.files:
        leaks.append("cellprompt's distribution (its file list) is readable")
except (importlib.metadata.PackageNotFoundError, OSError):
    pass
for root in sys.path:
    if not os.path.isdir(root):
        continue
    for name in os.listdir(root):
        low = name.lower()
        if low.startswith(("cellprompt", "__editable__.cellprompt", "__editable___cellprompt")):
            p = os.path.join(root, name)
            if os.path.isdir(p) and os.listdir(p) or os.path.isfile(p) and os.path.getsize(p):
                leaks.append(f"{p} is readable")
        if name == "tasks" and os.path.isdir(os.path.join(root, name, "builtin")):
            leaks.append(f"{os.path.join(root, name, 'builtin')} is readable")
print(json.dumps({"_leaks": sorted(set(leaks))}))
"""

_SEARCH = _READ_IDS + """
import site, stat, sys, time
# 25 ids of every copy; the salted-hash ids (`c` + 16 hex) are found in one pass per file:
# any occurrence lies inside a maximal run of >= 17 hex digits, whose 17-wide windows are
# looked up in a set. Other ids (copies made without hashing) are searched one by one.
owner = {}
for name, ids in IDS_BY_FILE.items():
    for i in ids[:: max(1, len(ids) // 25)][:25]:
        if len(i) >= 8:
            owner[i.encode()] = name
HEXID = re.compile(rb"c[0-9a-f]{16}")
hashed = {n for n in owner if HEXID.fullmatch(n)}
others = [n for n in owner if n not in hashed]
RUN = re.compile(rb"[0-9a-f]{17,}")
def holders(blob):
    found = {owner[n] for n in others if n in blob}
    if hashed:
        for m in RUN.finditer(blob):
            run = m.group()
            found.update(owner[run[k:k + 17]] for k in range(len(run) - 16)
                         if run[k:k + 17] in hashed)
    return found
runtime = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, "/usr", "/lib", "/lib64",
                                          "/bin", "/sbin")}
# in the runtime only files that could carry truth as text or arrays (not code, not docs)
data_suffixes = (".json", ".yaml", ".yml", ".csv", ".tsv", ".h5ad", ".h5", ".hdf5", ".npz",
                 ".npy", ".pkl", ".pickle", ".parquet", ".db", ".sqlite", ".loom", ".mtx")
skip = ("/proc", "/sys", "/dev", "/data")
deadline = time.monotonic() + 120
scanned = 0
def in_runtime(path):
    return any(path == r or path.startswith(r + "/") for r in runtime)
for dirpath, dirs, files in os.walk("/"):
    if dirpath.startswith(skip) or time.monotonic() > deadline:
        dirs[:] = []
        continue
    everything = not in_runtime(os.path.realpath(dirpath))
    for f in files:
        low = f.lower()
        if not everything and not low.endswith(data_suffixes):
            continue  # the runtime's code: searched for task files by the import probe
        p = os.path.join(dirpath, f)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > 20 << 20:
            continue
        if low in ("truth.json", "salt") or low.endswith((".h5ad", ".loom")):
            leaks.append(f"{p} looks like task data")
        try:
            with open(p, "rb") as fh:
                blob = fh.read()
        except OSError:
            continue
        scanned += 1
        whose = holders(blob) if owner else set()
        for name in whose:
            by_file[name].append(f"{p} holds the dataset's cell ids")
        if not whose and low.endswith((".yaml", ".yml")) and b"withhold:" in blob and b"graders:" in blob:
            leaks.append(f"{p} is a task file")
if time.monotonic() > deadline:
    leaks.append("the search did not finish: the filesystem is too large to rule out a leak")
print(json.dumps({"_leaks": sorted(set(leaks))[:20], "_scanned": scanned,
                  "_by_file": {k: sorted(set(v))[:20] for k, v in by_file.items()}}))
"""

_ORDER = _READ_IDS + """
n = len(IDS)
def value(pos, cid, columns):
    return VALUE_EXPR
for path, columns in ANSWERS.items():
    with open(path, "w") as fh:
        fh.write(",".join(columns) + "\\n")
        for pos, cid in enumerate(IDS):
            fh.write(f"{cid},{value(pos, cid, columns)}\\n")
print(json.dumps({"_leaks": []}))
"""

# a time-like column gets the position itself, a label column one of 10 blocks of it
_FROM_ORDER = "pos if 'time' in ','.join(columns) else pos * 10 // max(n, 1)"
_FROM_IDS = ("(int(re.findall(r'\\d+', cid)[0]) if re.findall(r'\\d+', cid) else 0) "
             "if 'time' in ','.join(columns) else "
             "(int(re.findall(r'\\d+', cid)[0]) % 10 if re.findall(r'\\d+', cid) else 0)")


@dataclass(frozen=True)
class Probe:
    name: str
    why: str
    cells: list[str]


# what the runtime exposes, the same in every task's sandbox: run once for all tasks
SHARED = ("cheat-bundled-data", "cheat-import-cellprompt", "cheat-filesystem-search")
PER_TASK = ("cheat-row-order", "cheat-cell-ids")


def _file_answers(task: Task) -> dict[str, list[str]]:
    """Each file answer's path and header (`columns`, else cell_id,<field name>)."""
    return {a.path or a.name: list(a.columns or ["cell_id", a.name])
            for a in task.answer if a.type == "file"}


def _code(template: str, answers: dict[str, list[str]], value: str = "") -> list[str]:
    return [template.replace("{answers!r}", repr(answers)).replace("VALUE_EXPR", value)]


def shared_probes() -> list[Probe]:
    """The probes of the runtime, run once with every task's copy mounted under /data."""
    return [
        Probe(SHARED[0], "load a library's bundled copy of the data", _code(_BUNDLED, {})),
        Probe(SHARED[1], "import cellprompt and read the task", _code(_IMPORT, {})),
        Probe(SHARED[2], "search the filesystem for truth", _code(_SEARCH, {})),
    ]


def task_probes(task: Task) -> list[Probe]:
    """The probes that write `task`'s own answer files from row order or ids."""
    answers = _file_answers(task)
    return [
        Probe(PER_TASK[0], "answer from the row order", _code(_ORDER, answers, _FROM_ORDER)),
        Probe(PER_TASK[1], "answer from the digits in the cell ids",
              _code(_ORDER, answers, _FROM_IDS)),
    ]
