"""Generated datasets with known truth, addressed as `gen:NAME?seed=…&cells=…`.

Public datasets can be memorised by the models under test; data drawn from a simulator
cannot, and can be drawn afresh for every run (`with_seed`). A reference names a
generator and its parameters; the file is made once per distinct parameter set and cached
under `<datasets_dir>/generated/`, with the usual `NAME.json` beside it. What the agent
sees is only the file, mounted under a neutral name (`name=` in the reference, else the
generator's default): never the generator's name nor a truth-bearing parameter.

Generators (each seeded and deterministic, ≤ 10 s and ≤ 50 MB at default sizes on 2 cores):
`celltypes`, `doublets`, `trajectory`, `batches`, `conditions`, `ambient`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from cellprompt.datasets.generate.result import Generated
from cellprompt.errors import DatasetError

PREFIX = "gen:"
MAX_CELLS = 20_000
CACHE_VERSION = 1  # bump when a generator's output changes for the same parameters


@dataclass(frozen=True)
class GeneratorSpec:
    fn: Callable[..., Generated]
    mount_name: str  # the neutral file name the agent sees, /data/<mount_name>.h5ad


def _registry() -> dict[str, GeneratorSpec]:
    from cellprompt.datasets.generate.ambient import ambient
    from cellprompt.datasets.generate.celltypes import celltypes, doublets
    from cellprompt.datasets.generate.samples import batches, conditions
    from cellprompt.datasets.generate.trajectory import trajectory

    return {"celltypes": GeneratorSpec(celltypes, "tissue"),
            "doublets": GeneratorSpec(doublets, "channel"),
            "trajectory": GeneratorSpec(trajectory, "culture"),
            "batches": GeneratorSpec(batches, "pooled"),
            "conditions": GeneratorSpec(conditions, "study"),
            "ambient": GeneratorSpec(ambient, "raw_channel")}


def generator_names() -> list[str]:
    return sorted(_registry())


def is_generated(ref: str) -> bool:
    return ref.strip().startswith(PREFIX)


@dataclass(frozen=True)
class GenRef:
    """A parsed reference: generator, its typed parameters, and the agent-facing name."""

    generator: str
    params: dict[str, int | float | bool]
    mount_name: str

    @property
    def seed(self) -> int:
        return int(self.params["seed"])

    def canonical(self) -> str:
        query = dict(sorted(self.params.items()))
        query_s = urlencode({k: _fmt(v) for k, v in query.items()})
        return f"{PREFIX}{self.generator}?{query_s}&name={self.mount_name}"

    def key(self) -> str:
        ident = json.dumps({"g": self.generator, "p": self.params, "v": CACHE_VERSION},
                           sort_keys=True)
        return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _fmt(value: int | float | bool) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def _coerce(generator: str, key: str, raw: str, default: object) -> int | float | bool:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("0", "1", "true", "false"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true")
        if isinstance(default, int):
            return int(raw)
        return float(raw)
    except ValueError:
        kind = type(default).__name__
        raise DatasetError(f"gen:{generator}: parameter {key}={raw!r} is not a valid {kind}") from None


def parse_ref(ref: str) -> GenRef:
    """`gen:NAME?seed=1&cells=2000&name=tissue` → GenRef (unknown names and params are errors)."""
    body = ref.strip().removeprefix(PREFIX)
    generator, _, query = body.partition("?")
    registry = _registry()
    if generator not in registry:
        raise DatasetError(f"unknown generator {generator!r} in {ref!r}: use one of "
                           f"{', '.join(sorted(registry))}")
    spec = registry[generator]
    signature = inspect.signature(spec.fn).parameters
    params: dict[str, int | float | bool] = {"seed": 0}
    mount = spec.mount_name
    for key, raw in parse_qsl(query, keep_blank_values=True):
        if key == "name":
            if not raw.replace("_", "").replace("-", "").isalnum():
                raise DatasetError(f"{ref!r}: name must be letters, digits, '_' or '-'")
            mount = raw
            continue
        if key not in signature:
            allowed = ", ".join(["name", *signature])
            raise DatasetError(f"gen:{generator} has no parameter {key!r}: use {allowed}")
        default = signature[key].default
        params[key] = _coerce(generator, key, raw, 0 if key == "seed" else default)
    for key, p in signature.items():  # defaults spelled out: one cache entry per dataset
        if key != "seed":
            params.setdefault(key, p.default)
    cells = params["cells"]
    if not isinstance(cells, int) or not 50 <= cells <= MAX_CELLS:
        raise DatasetError(f"gen:{generator}: cells must be between 50 and {MAX_CELLS}")
    return GenRef(generator, params, mount)


def with_seed(ref: str, seed: int) -> str:
    """The same generated dataset drawn with another seed (for fresh instances per run)."""
    parsed = parse_ref(ref)
    return GenRef(parsed.generator, {**parsed.params, "seed": int(seed)},
                  parsed.mount_name).canonical()


def generate(ref: str | GenRef) -> Generated:
    """Run the generator a reference names (no caching: see `cache.materialise_generated`)."""
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    spec = _registry()[parsed.generator]
    params = dict(parsed.params)
    try:
        return spec.fn(int(params.pop("seed")), **params)
    except ValueError as exc:
        raise DatasetError(f"gen:{parsed.generator}: {exc}") from None


__all__ = ["GenRef", "Generated", "generate", "generator_names", "is_generated", "parse_ref",
           "with_seed"]
