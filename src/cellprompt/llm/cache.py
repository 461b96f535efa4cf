"""The on-disk response cache: the same request to the same model is paid for once.

Two users, one cache. Opt-in for every API model (`llm_cache_dir`), useful
while developing tasks and graders, when the same conversation prefix is
replayed many times: a hit is marked `from_cache` and costs nothing. And an
evolution's reflection model (`as_recorded=True`, in the evolution folder): a
resumed evolution asks the same questions again and must get the very replies
the first session got, so its decisions replay exactly; what they cost is read
back from the entries (`recorded_usage`). Entries are JSON files named by a hash
of everything that shapes the reply.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cellprompt.llm.base import ChatModel, ChatReply, Message, ToolSpec, Usage

SCHEMA_VERSION = 1


class CacheEntry(BaseModel):
    schema_version: int = SCHEMA_VERSION
    key: str
    spec: str
    reply: ChatReply


def cache_key(spec: str, base_url: str | None, messages: list[Message],
              tools: list[ToolSpec] | None, params: dict[str, Any]) -> str:
    """sha256 of a canonical JSON of the request: same request, same key, across processes."""
    payload = {
        "v": SCHEMA_VERSION,
        "spec": spec,
        "base_url": base_url,
        "messages": [m.model_dump(mode="json") for m in messages],
        "tools": [t.model_dump(mode="json") for t in tools or []],
        "params": params,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedModel:
    """Wraps any `ChatModel`; looks like it (same spec, provider and capabilities)."""

    def __init__(self, inner: ChatModel, directory: Path, *, as_recorded: bool = False) -> None:
        self.inner = inner
        self.directory = directory
        self.as_recorded = as_recorded  # a hit is the reply as first received, cost included
        self._recorded: Usage | None = None  # the sum over stored entries, once read
        self.spec = inner.spec
        self.provider = inner.provider
        self.supports_tools = inner.supports_tools
        self.supports_images = inner.supports_images

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def complete(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 max_tokens: int | None = None, temperature: float | None = None,
                 response_schema: dict[str, Any] | None = None) -> ChatReply:
        params = {"max_tokens": max_tokens, "temperature": temperature,
                  "response_schema": response_schema}
        key = cache_key(self.spec, getattr(self.inner, "base_url", None), messages, tools, params)
        path = self._path(key)
        hit = self._read(path, key)
        if hit is not None and self.as_recorded:
            return hit
        if hit is not None:
            usage = hit.usage.model_copy(update={"cost_usd": 0.0})
            return hit.model_copy(update={"from_cache": True, "usage": usage, "latency_s": 0.0})
        reply = self.inner.complete(messages, tools=tools, max_tokens=max_tokens,
                                    temperature=temperature, response_schema=response_schema)
        self._write(path, CacheEntry(key=key, spec=self.spec, reply=reply))
        if self._recorded is not None:
            self._recorded = self._recorded + reply.usage
        return reply

    def recorded_usage(self) -> Usage:
        """What every stored reply cost when it was paid for (each request once)."""
        if self._recorded is None:
            self._recorded = sum((e.reply.usage for e in stored_entries(self.directory)), Usage())
        return self._recorded

    @staticmethod
    def _read(path: Path, key: str) -> ChatReply | None:
        """A stored reply, or None for a miss (absent, from another schema, or corrupt)."""
        entry = read_entry(path)
        return entry.reply if entry is not None and entry.key == key else None

    @staticmethod
    def _write(path: Path, entry: CacheEntry) -> None:
        """Write atomically so parallel trials never read half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{id(entry)}.tmp")
        tmp.write_text(entry.model_dump_json())
        os.replace(tmp, path)


def read_entry(path: Path) -> CacheEntry | None:
    """The entry in `path`, or None (absent, from another schema, or corrupt: a miss)."""
    try:
        entry = CacheEntry.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None
    return entry if entry.schema_version == SCHEMA_VERSION else None


def stored_entries(directory: Path) -> list[CacheEntry]:
    """Every readable entry under `directory`; corrupt or foreign files are skipped."""
    found = (read_entry(p) for p in sorted(directory.glob("*/*.json")))
    return [e for e in found if e is not None]
