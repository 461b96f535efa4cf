"""Prompts that ship with cellprompt (the demo's baseline, seeds for evolution)."""

from importlib.resources import files


def builtin_prompt(name: str = "baseline") -> str:
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def builtin_prompt_names() -> list[str]:
    """Names `--prompt` accepts for the shipped prompts (`baseline`, the default)."""
    return sorted(p.name[:-4] for p in files(__package__).iterdir() if p.name.endswith(".txt"))
