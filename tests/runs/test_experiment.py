"""The experiment file (`cellprompt.yaml` / `run -c FILE`): its schema, line-numbered errors, and
flags that override it (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cellprompt.errors import UsageError
from cellprompt.runs.experiment import load_experiment

FULL = """\
prompts: [baseline, prompts/]
models:
  - reference
  - {model: openai:llama3, base_url: http://127.0.0.1:9/v1}
tasks: [pbmc68k-qc-mito, "tasks/*.yaml"]
replicates: 3
parallel: 2
limits: {max_turns: 5, max_cost: 0.5}
judge: {model: "anthropic:claude-sonnet-4-5", samples: 2}
"""


def test_a_full_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.yaml").write_text("id: a\n")
    (tmp_path / "exp.yaml").write_text(FULL)
    exp = load_experiment(tmp_path / "exp.yaml")
    assert exp.prompts == ["baseline", str(tmp_path / "prompts")]
    assert exp.tasks == ["pbmc68k-qc-mito", str(tmp_path / "tasks" / "a.yaml")]
    assert [(m.model, m.base_url) for m in exp.model_entries()] == [
        ("reference", None), ("openai:llama3", "http://127.0.0.1:9/v1")]
    assert exp.replicates == 3 and exp.limits.max_turns == 5 and exp.judge and exp.judge.samples == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("prompts: [baseline]\nreplicates: 0\n", "exp.yaml:2: replicates: Input should be greater"),
    ("prompts: [baseline]\nmodles: [reference]\n", "exp.yaml:2: modles: Extra inputs are not permitted"
                                                   " (fields: prompts, models"),
    ("models:\n  - reference\n  - {model: x, baseurl: y}\n", "exp.yaml:3: models.1.baseurl: Extra"),
    ("limits:\n  max_turns: many\n", "exp.yaml:2: limits.max_turns: Input should be a valid integer"),
    ("prompts: [baseline\n", "exp.yaml:2: not valid YAML"),
    ("tasks: ['nothing/*.yaml']\n", "task glob 'nothing/*.yaml' matches no file"),
])
def test_every_mistake_names_the_line_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "exp.yaml").write_text(text)
    with pytest.raises(UsageError) as raised:
        load_experiment(tmp_path / "exp.yaml")
    assert expected in str(raised.value)


def test_each_model_keeps_its_server_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The preflight checks each model at the server the file gives it, says where that server
    came from, and writes nothing when it does not answer: no backend needed."""
    from cellprompt.cli.main import main
    from cellprompt.config import reset_settings

    (tmp_path / "task.yaml").write_text(
        "id: missing-data\ntitle: t\ndataset: gone.h5ad\nobjective: count\n"
        "answer: [{name: n, type: integer}]\n"
        "graders: [{type: multiple_choice, config: {correct_answer: A}}]\n"
        "reference: {cells: ['print(1)']}\n")
    (tmp_path / "cellprompt.yaml").write_text(
        "models:\n  - reference\n  - {model: openai:llama3, base_url: http://127.0.0.1:9/v1}\n"
        "tasks: [task.yaml]\nreplicates: 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLPROMPT_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setattr(sys, "argv", ["cellprompt", "run", "-n", "1", "--base-url", "http://127.0.0.1:7/v1"])
    reset_settings()
    with pytest.raises(SystemExit) as exited:
        main()
    reset_settings()
    said = capsys.readouterr().err
    assert exited.value.code != 0
    assert "127.0.0.1:9" in said and "cellprompt.yaml" in said, said  # the file's server, not --base-url
    assert "Traceback" not in said and not (tmp_path / "outputs").exists()


def test_the_file_chooses_the_executor_and_a_bad_one_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from cellprompt.cli.main import main
    from cellprompt.config import reset_settings

    (tmp_path / "cellprompt.yaml").write_text("tasks: [pbmc68k-qc-mito]\nmodels: [reference]\n"
                                              "executor: threads\n")
    assert load_experiment(tmp_path / "cellprompt.yaml").executor == "threads"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLPROMPT_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setattr(sys, "argv", ["cellprompt", "run"])
    reset_settings()
    with pytest.raises(SystemExit) as exited:
        main()
    reset_settings()
    said = capsys.readouterr().err
    assert exited.value.code == 2 and "threads" in said and "local" in said, said
    assert not (tmp_path / "outputs").exists()
