"""The warm numba cache (issue 13): what analysts run compiles nothing in a trial, and
nothing a trial leaves in the cache reaches the next kernel.

A host kernel finds scanpy's compiled functions in site-packages' own numba cache
once they ran there; a sandbox starts from the seed alone, so every call the seed
misses makes the sandbox seconds slower than the host (regress_out cost a task
2.5x its host time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from cellprompt.sandbox import HttpSandbox
from cellprompt.sandbox.service.numba_seed import SEED_INSIDE, WARMUP
from cellprompt.tasks.loader import builtin_tasks
from tests.sandbox.conftest import open_for

BACKENDS = ["bwrap", "docker"]

# scanpy calls of the built-in solutions that leave nothing in numba's cache: no numba
# code at all, or only code numba cannot cache (it compiles in every process, host too)
NOTHING_TO_CACHE = {
    "sc.get.rank_genes_groups_df",  # pandas
    "sc.pp.combat",  # numpy and pandas
    "sc.tl.score_genes_cell_cycle",  # sc.tl.score_genes, warmed
    "sc.external.pp.hashsolo",  # numpy and scipy
}
SCANPY_CALL = re.compile(r"\bsc\.(?:experimental\.|external\.)?(?:pp|tl|get|metrics)\.\w+(?=\()")

# how many compiled functions the cache holds, and where
INDEX_COUNT = ("import os, pathlib\n"
               "print(len(list(pathlib.Path(os.environ['NUMBA_CACHE_DIR']).rglob('*.nbi'))))")


def test_every_scanpy_call_of_the_builtin_solutions_is_warmed() -> None:
    """Adding a task whose reference or kit calls a numba-backed scanpy function the warm-up
    does not run fails here, before it makes every trial of that task slower."""
    used: dict[str, str] = {}
    for task in builtin_tasks(include_knowledge_only=True):
        cells = [*(task.reference.cells if task.reference else []),
                 *(cell for variant in task.variants for cell in variant.cells)]
        for call in SCANPY_CALL.findall("\n".join(cells)):
            used.setdefault(call, task.id)
    warmed = set(SCANPY_CALL.findall(WARMUP))
    missing = {call: task for call, task in used.items()
               if call not in warmed and call not in NOTHING_TO_CACHE}
    assert not missing, f"add these calls to numba_seed.WARMUP (first used by): {missing}"
    assert used, "no scanpy call found: the pattern or the task layout changed"


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest) -> Iterator[HttpSandbox]:
    with open_for(request.param, memory="2g", cpus=2.0) as sb:
        yield sb


def _indexed(sb: HttpSandbox) -> int:
    r = sb.execute(INDEX_COUNT)
    assert r.final_status == "ok", r.text()
    return int(r.text().strip())


def test_warmed_calls_compile_nothing_in_a_trial(seeded: HttpSandbox) -> None:
    before = _indexed(seeded)
    assert before > 0, "the sandbox's numba cache was not seeded"
    r = seeded.execute(
        "import numpy as np, scipy.sparse as sp, anndata as ad, scanpy as sc\n"
        "rng = np.random.default_rng(1)\n"
        "a = ad.AnnData(sp.csr_matrix(rng.poisson(2, (300, 120)).astype(np.float32)))\n"
        "a.var_names = [f'MT-{i}' if i < 5 else f'g{i}' for i in range(a.n_vars)]\n"
        "a.var['mt'] = a.var_names.str.startswith('MT-')\n"
        "sc.pp.calculate_qc_metrics(a, qc_vars=['mt'], percent_top=None, inplace=True)\n"
        "sc.pp.downsample_counts(a.copy(), counts_per_cell=100, random_state=0)\n"
        "sc.pp.normalize_total(a)\nsc.pp.log1p(a)\n"
        "sc.pp.regress_out(a, ['total_counts', 'pct_counts_mt'])\n"
        "sc.pp.pca(a, n_comps=10)\nsc.pp.neighbors(a)\nsc.tl.leiden(a, flavor='igraph')\n"
        "sc.tl.rank_genes_groups(a, 'leiden', method='wilcoxon')\nprint('done')", timeout=300)
    assert r.final_status == "ok", r.text()
    assert _indexed(seeded) == before, "a warmed call compiled anew: the seed misses it"


def test_the_seed_is_read_only_and_the_cache_dies_with_the_kernel(seeded: HttpSandbox) -> None:
    r = seeded.execute(
        "import json, os, pathlib\n"
        "cache = pathlib.Path(os.environ['NUMBA_CACHE_DIR'])\n"
        "(cache / 'planted.nbi').write_text('from an earlier trial')\n"
        f"seed = pathlib.Path({SEED_INSIDE!r})\n"
        "try:\n    (seed / 'planted').write_text('x')\n    wrote = True\n"
        "except OSError:\n    wrote = False\n"
        "print(json.dumps({'seed_written': wrote, 'seed_in_env': any(\n"
        "    v == str(seed) for v in os.environ.values())}))")
    assert json.loads(r.text()) == {"seed_written": False, "seed_in_env": False}
    seeded.restart()
    r = seeded.execute("import os, pathlib\n"
                       "print((pathlib.Path(os.environ['NUMBA_CACHE_DIR']) / 'planted.nbi')"
                       ".exists())")
    assert r.text().strip() == "False"
    assert _indexed(seeded) > 0, "the restarted kernel's cache was not seeded again"
