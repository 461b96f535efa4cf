"""Prompts that ship with cellprompt (the demo's baseline, seeds for evolution)."""

from importlib.resources import files


def builtin_prompt(name: str = "baseline") -> str:
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
