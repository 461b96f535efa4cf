"""Console tables never print a CI that one or two trials cannot support (1.000–1.000 at n=1
reads as certainty); from three trials on, the CI is shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellprompt.cli.main import app
from tests.export.run_factory import kernel_cells, make_run


@pytest.mark.parametrize(("scores", "shown"), [
    ([1.0], "(n=1, no CI)"),
    ([1.0, 1.0], "(n=2, no CI)"),
    ([1.0, 0.5, 0.0], "(0.000–1.000)"),
])
def test_report_table_says_when_n_is_too_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               scores: list[float], shown: str) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    outputs = tmp_path / "outputs"
    make_run(outputs, kernel_cells(), scores={("p", "openai:gpt-x", "t_qc"): list(scores)}, judge=False)
    result = CliRunner().invoke(app, ["report", str(outputs / "run-a"), "-f", "table"])
    assert result.exit_code == 0, result.output
    assert shown in result.output
    if len(scores) < 3:
        assert "1.000–1.000" not in result.output
