"""Every pluggable part is named through one `Registry`, and listing names imports no implementation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cellprompt.registry import Registry


def test_registry_keeps_order_and_names_the_unknown() -> None:
    things: Registry[int] = Registry("thing")
    things.register("b")(2)
    things.register("a")(1)
    assert things.names() == ["b", "a"] and "a" in things and things["b"] == 2
    assert things.get("c") is None
    assert things.unknown("c") == "unknown thing 'c': use one of b, a"
    things.remove("b")
    assert list(things) == ["a"]


def test_the_registries_list_their_implementations() -> None:
    from cellprompt.evolve import STRATEGIES
    from cellprompt.grading.registry import graders
    from cellprompt.llm.factory import providers
    from cellprompt.runs.executors import EXECUTORS
    from cellprompt.sandbox.registry import backends

    assert backends.names() == ["local", "bwrap", "docker"]
    assert providers.names() == ["openai", "anthropic", "reference", "replay", "agent"]
    assert STRATEGIES.names() == ["iterative", "gepa"]
    assert EXECUTORS.names() == ["local", "ray"]
    assert "numeric_tolerance" in graders


@pytest.mark.parametrize("module, lazy", [
    ("cellprompt.sandbox.registry", "cellprompt.sandbox.docker_backend"),
    ("cellprompt.llm.factory", "cellprompt.llm.anthropic_model"),
    ("cellprompt.evolve.api", "cellprompt.evolve.gepa_strategy"),
    ("cellprompt.runs.executors", "cellprompt.runs.ray_executor"),
])
def test_naming_imports_no_implementation(module: str, lazy: str) -> None:
    code = f"import sys, {module}; print({lazy!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
