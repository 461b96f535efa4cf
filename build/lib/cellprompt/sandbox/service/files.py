"""Workspace file access for `/files/{path}`: nothing outside the workspace, symlinks included."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class PathRejected(ValueError):
    """The path leaves the workspace (absolute, `..`, or a symlink pointing out)."""


def confine(workspace: Path, path: str) -> Path:
    """The real path of `path` inside `workspace`, or `PathRejected`."""
    rel = PurePosixPath(path.removeprefix("/workspace/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise PathRejected(path)
    root = workspace.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise PathRejected(path)
    return target
