"""`cellprompt datasets …` end to end in-process: exit codes, tables, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cellprompt.cli.main import main
from tests.datasets.fake_census import DATASETS, FakeCensus

LUNG, BLOOD, BRAIN, KIDNEY = (d["dataset_id"] for d in DATASETS[:4])


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cellprompt", "datasets", *args])
    with pytest.raises(SystemExit) as info:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.fixture
def cli(env_census: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    return lambda *args: run(monkeypatch, capsys, *args)


def test_versions(cli) -> None:
    code, out, _ = cli("versions")
    assert code == 0 and "2024-01-01" in out and "V2, stable" in out
    assert "2023-06-01" not in out
    code, out, _ = cli("versions", "--all")
    assert code == 0 and "2023-06-01" in out


def test_versions_json(cli) -> None:
    code, out, _ = cli("versions", "--json", "--all")
    data = json.loads(out)
    assert code == 0 and [v["retracted"] for v in data] == [False, False, True]


def test_list_table_and_json(cli) -> None:
    code, out, _ = cli("list", "--tissue", "lung")
    assert code == 0 and LUNG in out and "Human lung atlas" in out and BLOOD not in out
    code, out, _ = cli("list", "--organism", "human", "--min-cells", "15", "--search", "human",
                       "--json")
    assert code == 0 and {r["dataset_id"] for r in json.loads(out)} == {LUNG, BLOOD}


def test_show_census_id(cli) -> None:
    code, out, _ = cli("show", KIDNEY, "--json")
    detail = json.loads(out)
    assert code == 0 and detail["disease"] == ["chronic kidney disease"]
    code, out, _ = cli("show", f"census:{KIDNEY}@latest")
    assert code == 0 and "Kidney Precision Medicine" in out and "2024-07-01" in out


def test_show_local_and_builtin(cli, env_census: Path) -> None:
    code, out, _ = cli("show", "builtin:krumsiek11")
    assert code == 0 and "640 cells x 11 genes" in out and "cell_type (categorical" in out
    path = env_census / "builtin" / "krumsiek11.h5ad"
    code, out, _ = cli("show", str(path), "--json")
    assert code == 0 and json.loads(out)["summary"]["n_obs"] == 640


def test_download_then_already_there(cli, census: FakeCensus, env_census: Path) -> None:
    code, out, _ = cli("download", BRAIN)
    assert code == 0 and "downloaded:" in out and "already downloaded" not in out
    assert (env_census / f"{BRAIN}.h5ad").is_file()
    assert (env_census / f"{BRAIN}.json").is_file()
    code, out, _ = cli("download", BRAIN)
    assert code == 0 and "already downloaded" in out
    code, out, _ = cli("list", "--local", "--json")
    assert code == 0 and [d["name"] for d in json.loads(out)] == [BRAIN]


def test_download_to(cli, tmp_path: Path) -> None:
    code, _, _ = cli("download", BLOOD, "--to", str(tmp_path / "elsewhere"))
    assert code == 0 and (tmp_path / "elsewhere" / f"{BLOOD}.h5ad").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (("show", "ffff-0000"), "unknown Census dataset id 'ffff-0000'"),
    (("show", "/no/such/file.h5ad"), "does not exist"),
    (("show", "builtin:nope"), "unknown builtin dataset 'nope'"),
    (("download", "../x"), "invalid Census dataset id"),
    (("list", "--version", "1999"), "unknown or retracted Census version '1999'"),
])
def test_errors_are_one_line(cli, args: tuple[str, ...], message: str) -> None:
    code, _, err = cli(*args)
    assert code == 1 and message in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("args", [("versions",), ("list",), ("download", LUNG)])
def test_offline_one_line(cli, args: tuple[str, ...], closed_port: int,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cellprompt.config import reset_settings

    monkeypatch.setenv("CELLPROMPT_CENSUS_RELEASE_DIRECTORY_URL",
                       f"http://127.0.0.1:{closed_port}/release.json")
    reset_settings()
    code, _, err = cli(*args)
    assert code == 1 and "cannot reach the CELLxGENE Census" in err and "network" in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_no_command_without_terminal(cli) -> None:
    code, _, err = cli()
    assert code == 2 and "missing command" in err


def test_download_missing_id_without_terminal(cli) -> None:
    code, _, err = cli("download")
    assert code == 2 and "missing DATASET_ID" in err
