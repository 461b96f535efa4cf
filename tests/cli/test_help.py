"""`--help` of every command: an Examples section, and no `<bool>` after a flag (issue 15)."""

from __future__ import annotations

import sys

import pytest


def command_paths() -> list[list[str]]:
    from cellprompt.cli.main import command

    paths: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(command(), [])
    return paths


PATHS = command_paths()


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "cellprompt" for p in PATHS])
def test_every_help_has_examples_and_no_bool_metavar(
    path: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cellprompt.cli.main import main

    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["cellprompt", *path, "--help"])
    try:
        main()
    except SystemExit as exited:  # a group's bare help exits; a command's returns
        assert exited.code in (0, None)
    text = capsys.readouterr().out
    assert "Examples" in text, text
    assert "cellprompt " + " ".join(path) in text.split("Examples", 1)[1]  # its own examples
    assert "<bool>" not in text, text
    assert "BOOLEAN" not in text, text


def test_the_command_tree_is_large_enough_to_mean_something() -> None:
    assert len(PATHS) > 20 and ["run"] in PATHS and ["tasks", "list"] in PATHS
