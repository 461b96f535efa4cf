"""The simulated reflection model: a real `ChatModel` that rewrites the prompt it is sent.

It reads the request as plain text, not in cellprompt's evidence format: every
known failure symptom found outside the current prompt is a failure to fix
(the most frequent first), and a rule line quoted outside the current prompt
is one already tried (or already stated elsewhere in the prompt). So any loop
that shows it the same evidence gets the same help; a loop that shows it less
(only a grade) gets guesses.

Its mistakes are the ones reflection models make: at `error_rate` a fix is
replaced by a random line (irrelevant, filler or harmful advice) and a line may
be dropped; at `harm_rate` it also makes the prompt worse on its own (adds
harmful advice, or drops a rule that works); at `copy_rate` it pastes the task
objective. Told that a text cannot be used, it removes what the complaint names.
"""

from __future__ import annotations

import random
import re
from typing import Any

from cellprompt.evolve.checks import words
from cellprompt.evolve.reflection import CLOSE, OPEN, extract_prompt
from cellprompt.evolve.simulation.rules import (
    ALL_RULES,
    FILLERS,
    HARMFUL,
    IRRELEVANT,
    USEFUL_RULES,
    has_phrase,
)
from cellprompt.llm.base import ChatReply, Message, ToolSpec, Usage

_FIRST_PROMPT = re.compile(re.escape(OPEN) + r".*?" + re.escape(CLOSE), re.S)


class SimReflectionModel:
    """A `ChatModel` that rewrites the prompt it finds in the request, guided by the failures there."""

    spec = "sim:reflection"
    provider = "sim"
    supports_tools = False
    supports_images = False

    def __init__(self, seed: int = 0, *, error_rate: float = 0.25, harm_rate: float = 0.0,
                 copy_rate: float = 0.1, edits: int = 2) -> None:
        self.rng = random.Random(seed)
        self.error_rate = error_rate
        self.harm_rate = harm_rate
        self.copy_rate = copy_rate
        self.edits = edits
        self.calls = 0
        self._pool = [*(r.line for r in USEFUL_RULES), *IRRELEVANT, *HARMFUL, *FILLERS]

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        self.calls += 1
        request = next(m.content for m in messages if m.role == "user")
        current = extract_prompt(request, first=True) or ""
        last = messages[-1].content if messages[-1].role == "user" else ""
        if len(messages) > 2 and "cannot be used" in last:
            previous = extract_prompt(messages[-2].content, first=True) or current
            text = self._repair(previous, last)
        else:
            text = self._rewrite(current, request)
        return self._reply(
            f"The failures call for clearer general rules.\n{OPEN}\n{text}\n{CLOSE}", max_tokens
        )

    def _reply(self, content: str, max_tokens: int | None) -> ChatReply:
        tokens = int(len(content.split()) * 1.3) + 1
        stop = "end_turn"
        if max_tokens is not None and tokens > max_tokens:
            keep = int(max_tokens / 1.3)
            content = " ".join(content.split(" ")[:keep])
            tokens, stop = max_tokens, "max_tokens"
        return ChatReply(
            message=Message(role="assistant", content=content),
            stop_reason=stop,
            usage=Usage(input_tokens=3000, output_tokens=tokens, cost_usd=0.02),
        )

    def _fixes(self, current: str, request: str) -> list[str]:
        """Rule lines for the symptoms the request reports, most reported first, minus those tried."""
        context = _FIRST_PROMPT.sub("", request, count=1)
        pw = words(current)
        counts = {r.id: context.count(r.symptom) for r in ALL_RULES.values()}
        return [
            ALL_RULES[rid].line
            for rid, n in sorted(counts.items(), key=lambda kv: -kv[1])
            if n and not has_phrase(pw, ALL_RULES[rid].phrase) and ALL_RULES[rid].line not in context
        ]

    def _rewrite(self, current: str, request: str) -> str:
        rng = self.rng
        wanted = self._fixes(current, request) or [rng.choice(self._pool)]  # nothing to go on: a guess
        new_lines = current.splitlines()
        for line in wanted[: self.edits]:
            if rng.random() < self.error_rate:
                line = rng.choice(self._pool)
            if line not in new_lines:
                new_lines.append(line)
        if rng.random() < self.error_rate / 2:
            removable = [i for i, ln in enumerate(new_lines) if ln.startswith("- ")]
            if removable:
                del new_lines[rng.choice(removable)]
        if self.harm_rate and rng.random() < self.harm_rate:
            useful = [i for i, ln in enumerate(new_lines)
                      if any(has_phrase(words(ln), r.phrase) for r in USEFUL_RULES)]
            if useful and rng.random() < 0.5:
                del new_lines[rng.choice(useful)]  # "simplified" away a rule that works
            else:
                new_lines.append(rng.choice(sorted(HARMFUL)))
        if rng.random() < self.copy_rate:
            objective = re.search(r"Objective the agent received:\n(.*)", request)
            if objective:
                new_lines.append("- Note: " + objective.group(1).strip())
        return "\n".join(new_lines)

    def _repair(self, text: str, complaint: str) -> str:
        lines = text.splitlines()
        if "copied" in complaint:
            lines = [ln for ln in lines if not ln.startswith("- Note: ")]
        if "length" in complaint:
            for filler in FILLERS:
                if filler in lines:
                    lines.remove(filler)
            budget = re.search(r"budget of (\d+)", complaint)
            while budget and len(words("\n".join(lines))) > int(budget.group(1)):
                bullets = [i for i, ln in enumerate(lines) if ln.startswith("- ")]
                if not bullets:
                    break
                del lines[bullets[-1]]
        return "\n".join(lines)
