"""A trial is graded as `tasks validate` grades: a `python_check` that mounts the agent's
dataset sees it in real runs too, in a sandbox of the trial's own backend."""

from __future__ import annotations

from pathlib import Path

from cellprompt import api

TASK = """\
schema_version: 1
id: check-sees-the-dataset
title: A check that reads the agent's dataset
dataset: builtin:pbmc68k_reduced
objective: |
  Count the cells of /data/pbmc68k_reduced.h5ad and submit {"n": int}.
answer:
  - {name: n, type: integer}
graders:
  - type: python_check
    config:
      mount_dataset: true
      code: |
        import anndata as ad
        n = ad.read_h5ad("/data/pbmc68k_reduced.h5ad", backed="r").n_obs
        assert answer["n"] == n, (answer, n)
reference:
  cells:
    - |
      import anndata as ad, json
      print(json.dumps({"n": ad.read_h5ad("/data/pbmc68k_reduced.h5ad", backed="r").n_obs}))
limits: {max_code_executions: 3, max_turns: 4, wall_time_s: 300}
metadata: {category: qc, difficulty: easy}
"""


def test_a_python_check_mounting_the_dataset_grades_a_real_trial(run_env: Path, tmp_path: Path
                                                                 ) -> None:
    task = tmp_path / "check.yaml"
    task.write_text(TASK)
    store = api.run([str(task)], models=["reference"], sandbox="bwrap", out=run_env)
    [record] = store.trials()
    assert record.status == "submitted", record.error
    assert record.passed, [g.reasoning for g in record.grades]
