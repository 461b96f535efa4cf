"""A user's mistakes on the command line: a short message and exit 2, never a traceback (issue 15).

Driven through the real entry point in a subprocess, as a user meets it, with no terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

MISTAKES = [
    (["run", "--bogus-flag"], "No such option: --bogus-flag"),
    (["run", "--replicate", "2"], "--replicates"),  # the close option is named
    (["run", "-n", "abc"], "'--replicates'"),
    (["run", "--replicates", "0"], "'--replicates'"),
    (["tasks", "show"], "Missing argument"),
    (["report"], "Missing argument"),
    (["nosuchcmd"], "Commands: demo"),  # the valid choices
    (["tasks", "lst"], "Did you mean 'list'"),
    (["tasks", "list", "--nope"], "No such option"),
    (["run", "--retry-errors"], "--retry-errors goes with --resume"),
    (["run", "--prompt", "promtps/", "--task", "pbmc68k-qc-mito"], "promtps/ does not exist"),
]


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["CELLPROMPT_OUTPUTS_DIR"] = str(cwd / "outputs")
    return subprocess.run([sys.executable, "-m", "cellprompt.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_usage_mistakes_through_the_installed_entry_point(tmp_path: Path) -> None:
    """The bundled-click path of typer ≥ 0.20 and the real-click path meet here, in a subprocess."""
    cases = [MISTAKES[0], MISTAKES[2], MISTAKES[4], MISTAKES[6]]
    with ThreadPoolExecutor(4) as pool:  # one interpreter start each: run them side by side
        results = list(pool.map(lambda case: cli(case[0], tmp_path), cases))
    for (args, expected), r in zip(cases, results, strict=True):
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and expected in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 2, (args, r.stderr)  # the message, the help


@pytest.mark.parametrize(("args", "expected"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_every_usage_mistake_is_a_short_message_and_exit_2(
    args: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cellprompt.cli.main import main
    from cellprompt.config import reset_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLPROMPT_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setattr(sys, "argv", ["cellprompt", *args])
    reset_settings()
    with pytest.raises(SystemExit) as exited:
        main()
    reset_settings()
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    assert "Traceback" not in stderr and expected in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 2, stderr  # the message, then where the help is
    assert not (tmp_path / "outputs").exists()  # a mistake leaves nothing behind


@pytest.mark.parametrize("flag", ["-h"])  # --help is click's own
def test_help_flags_print_help_and_exit_0(tmp_path: Path, flag: str) -> None:
    r = cli(["run", flag], tmp_path)
    assert r.returncode == 0 and "--replicates" in r.stdout and not r.stderr.strip()


def test_tables_keep_whole_ids_without_a_terminal(tmp_path: Path) -> None:
    from cellprompt.tasks import builtin_tasks

    r = cli(["tasks", "list"], tmp_path)
    assert r.returncode == 0, r.stderr
    for task in builtin_tasks():
        assert task.id in r.stdout
    assert "…" not in r.stdout
