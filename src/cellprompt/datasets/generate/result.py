"""What a generator returns: the AnnData as stored on the host, and where its truth sits.

The truth travels in the file itself (obs columns, `uns['truth']`), because that is what
task materialisation already knows how to withhold: a task names the truth columns in its
`withhold:` section, the agent's sealed copy loses them, and the graders read them from the
truth file kept on the host. `truth_keys` lists every truth-bearing key of the file so a
test can prove that no task on generated data forgets to withhold one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import anndata as ad


@dataclass
class Generated:
    adata: ad.AnnData
    truth: dict[str, Any]  # uns['truth'], plus the per-cell truth columns under 'obs'
    truth_keys: dict[str, list[str]] = field(default_factory=dict)  # {"obs": [...], "uns": [...]}
    description: str = ""  # neutral: what an analyst would be told about the data


def build(counts: np.ndarray, genes: list[str], obs: dict[str, Any], *, uns: dict[str, Any],
          truth_obs: list[str], description: str, var: dict[str, Any] | None = None,
          truth_var: list[str] | None = None) -> Generated:
    """Assemble the AnnData (sparse float32 counts, neutral cell ids) and its truth record."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    n = counts.shape[0]
    frame = pd.DataFrame(obs, index=[f"cell{i}" for i in range(n)])
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("category")
    var_frame = pd.DataFrame(var or {}, index=pd.Index(genes))
    adata = ad.AnnData(sp.csr_matrix(counts, dtype=np.float32), obs=frame, var=var_frame)
    adata.uns.update(uns)
    def column(c: str) -> list[Any]:  # missing values (NaN) become None, as in truth.json
        values = frame[c].astype(object)
        return [None if pd.isna(v) else (str(v) if isinstance(v, str) else v) for v in values]

    truth = {**uns.get("truth", {}), "obs": {c: column(c) for c in truth_obs}}
    keys = {"obs": list(truth_obs), "uns": ["truth"] if "truth" in uns else []}
    if truth_var:
        keys["var"] = list(truth_var)
    return Generated(adata=adata, truth=truth, truth_keys=keys, description=description)
