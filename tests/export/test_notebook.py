from __future__ import annotations

import base64
import json
from pathlib import Path

import nbformat
import pytest

from cellprompt.errors import UsageError
from cellprompt.export.legacy import convert_legacy_log
from cellprompt.export.notebook import trial_to_notebook
from cellprompt.runs.store import RunStore
from tests.export.run_factory import make_evaluation


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebook_keeps_every_real_output(run: RunStore) -> None:
    record = next(t for t in run.trials() if t.score == 1.0)
    nb = trial_to_notebook(record, make_evaluation(record, 77.0), run_dir=run.path)
    nbformat.validate(nb)
    code = _code_cells(nb)
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    streams = code[0].outputs
    assert [(o.output_type, o.name) for o in streams] == [("stream", "stdout"), ("stream", "stderr")]
    assert "hello from stdout" in streams[0].text
    error = code[1].outputs[0]
    assert error.output_type == "error" and error.ename == "ZeroDivisionError"
    assert any("\x1b[" in line for line in error.traceback)  # colours kept, as Jupyter shows them
    figure = code[2].outputs[0]
    png = base64.b64decode(figure.data["image/png"])
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    result = code[3].outputs[0]
    assert result.output_type == "execute_result" and result.data["text/plain"] == "42"
    assert result.execution_count == 4


def test_notebook_header_answer_and_markdown(run: RunStore) -> None:
    record = next(t for t in run.trials() if t.score == 1.0)
    nb = trial_to_notebook(record, make_evaluation(record, 77.0), run_dir=run.path)
    header = nb.cells[0].source
    assert record.spec.task_id in header and record.spec.prompt_id in header and record.spec.model in header
    assert "77.0" in header and "Solid work" in header and "numeric_tolerance" in header
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "**Plan:** streams, then a figure." in "\n".join(markdown)
    assert '"n_clusters": 42' in nb.cells[-1].source


def test_failed_judgement_and_missing_figure_file(run: RunStore, tmp_path: Path) -> None:
    record = run.trials()[0]
    nb = trial_to_notebook(record, make_evaluation(record, 0, ok=False), run_dir=tmp_path)  # artifacts absent
    assert "Judgement failed" in nb.cells[0].source and "not JSON" in nb.cells[0].source
    figure_cell = _code_cells(nb)[2]
    assert all("image/png" not in o.get("data", {}) for o in figure_cell.outputs)
    nbformat.validate(nb)


LEGACY = {
    "prompt_a": {
        "context": {"dataset": "pbmc3k.h5ad", "model": "gpt-4o"},
        "turns": [
            {"role": "system", "content": "You are an AI assistant analysing a single-cell dataset."},
            {"role": "user", "content": "How many clusters?"},
            {
                "role": "assistant",
                "content": "Let me load it.\n```python\nimport anndata\n```\nand count:\n"
                "```python\nprint(8)\n```",
            },
            {
                "role": "user",
                "content": "Code execution result:\n--- STDOUT ---\n8\n--- STDERR ---\nwarn\n"
                "Saved images: fig1.png",
            },
            {"role": "assistant", "content": "There are 8 clusters."},
        ],
    },
    "prompt b/2": {
        "context": {},
        "turns": [
            {"role": "assistant", "content": "```python\n1/0\n```"},
            {"role": "user", "content": "Code execution result:\n[status: error]"},
        ],
    },
}


def test_legacy_log_becomes_notebooks_beside_it(tmp_path: Path, run: RunStore) -> None:
    png = next(run.path.glob("artifacts/*/fig-1.png")).read_bytes()
    (tmp_path / "fig1.png").write_bytes(png)
    log = tmp_path / "session.json"
    log.write_text(json.dumps(LEGACY))
    paths = convert_legacy_log(log)
    assert [p.name for p in paths] == ["session_prompt_a.ipynb", "session_prompt_b_2.ipynb"]
    nb = nbformat.read(str(paths[0]), as_version=4)
    nbformat.validate(nb)
    code = _code_cells(nb)
    assert len(code) == 1 and code[0].source == "import anndata\nprint(8)"
    outs = code[0].outputs
    assert [(o.output_type, o.get("name")) for o in outs] == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("display_data", None),
    ]
    assert outs[0].text == "8\n" and base64.b64decode(outs[2].data["image/png"]) == png
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "pbmc3k.h5ad" in text and "There are 8 clusters." in text and "How many clusters?" in text
    second = nbformat.read(str(paths[1]), as_version=4)
    assert "[status: error]" in _code_cells(second)[0].outputs[0].text


def test_legacy_rejects_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"a": [1, 2]}))
    with pytest.raises(UsageError, match="not a log of the original tool"):
        convert_legacy_log(bad)
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not a readable JSON log"):
        convert_legacy_log(bad)
