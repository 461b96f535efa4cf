"""`cellprompt configure`: writes .env with mode 0600, merges, never shows a key."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

from dotenv import dotenv_values
from typer.testing import CliRunner

from cellprompt.cli.main import app

CLI = [sys.executable, "-m", "cellprompt.cli.main"]


def test_options_write_a_private_env_merged_with_existing_lines(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# mine\nOTHER=1\nOPENAI_API_KEY=old\nexport ANTHROPIC_API_KEY=old2\n")
    env.chmod(0o644)
    result = CliRunner().invoke(app, ["configure", "--openai-key", "sk-secret-1",
                                      "--anthropic-key", "sk ant#2", "--env-file", str(env)])
    assert result.exit_code == 0, result.output
    assert "sk-secret-1" not in result.output and "sk ant#2" not in result.output
    assert "OPENAI_API_KEY" in result.output
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert dotenv_values(env) == {"OTHER": "1", "OPENAI_API_KEY": "sk-secret-1",
                                  "ANTHROPIC_API_KEY": "sk ant#2"}
    assert env.read_text().startswith("# mine\nOTHER=1\n")

    CliRunner().invoke(app, ["configure", "--base-url", "http://127.0.0.1:8000/v1",
                             "--env-file", str(env)])
    assert dotenv_values(env)["OPENAI_BASE_URL"] == "http://127.0.0.1:8000/v1"
    assert dotenv_values(env)["OPENAI_API_KEY"] == "sk-secret-1"


def test_new_env_is_created_0600(tmp_path: Path) -> None:
    env = tmp_path / "sub" / ".env"
    result = CliRunner().invoke(app, ["configure", "--openai-key", "k", "--env-file", str(env)])
    assert result.exit_code == 0
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and env.read_text() == "OPENAI_API_KEY=k\n"


def test_no_terminal_and_no_options_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "configure"], cwd=tmp_path, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2
    assert "nothing to configure: pass --openai-key" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / ".env").exists()


def _expect(fd: int, text: bytes, seen: bytearray, deadline: float) -> None:
    while text not in seen:
        assert time.monotonic() < deadline, f"waited for {text!r}, got {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            seen.extend(os.read(fd, 4096))


def _wait_echo_off(fd: int, deadline: float) -> None:
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "the key prompt never turned terminal echo off"
        time.sleep(0.01)


def test_asks_on_a_terminal_without_echoing_keys(tmp_path: Path) -> None:
    main, child = os.openpty()
    proc = subprocess.Popen([*CLI, "configure"], cwd=tmp_path, stdin=child, stdout=child,
                            stderr=child, start_new_session=True)
    os.close(child)
    seen = bytearray()
    deadline = time.monotonic() + 30
    try:
        _expect(main, b"OPENAI_API_KEY", seen, deadline)
        _wait_echo_off(main, deadline)  # a person types after the prompt; a script must wait
        os.write(main, b"sk-typed-secret\n")
        _expect(main, b"ANTHROPIC_API_KEY", seen, deadline)
        _wait_echo_off(main, deadline)
        os.write(main, b"\n")
        _expect(main, b"OPENAI_BASE_URL", seen, deadline)
        os.write(main, b"\n")
        _expect(main, b"(mode 0600)", seen, deadline)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert b"sk-typed-secret" not in seen
    assert dotenv_values(tmp_path / ".env") == {"OPENAI_API_KEY": "sk-typed-secret"}
