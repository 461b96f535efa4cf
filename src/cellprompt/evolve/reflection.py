"""Asking the reflection model for a better prompt, and refusing what it must not return.

The original rewrite was capped at 500 output tokens, so long prompts came back
cut off. Here the model gets a generous token allowance; a reply cut by the
token limit is detected from its stop reason (or a missing closing tag) and
asked again with more room. A candidate over the length budget or copying a
long span from a task text is sent back once with the reason, and dropped if
the model insists: such candidates are never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cellprompt.evolve.checks import copy_flag, length_flag, word_count
from cellprompt.evolve.leaks import Fact, leak_flag
from cellprompt.llm.base import ChatModel, ChatReply, Message, Usage

OPEN, CLOSE = "<prompt>", "</prompt>"
TRUNCATED_STOPS = {"max_tokens", "length", "max_output_tokens"}
MAX_TOKENS_CAP = 64000

SYSTEM = (
    "You improve the system prompt of an LLM agent that analyses single-cell transcriptomics data by "
    "writing and running Python (scanpy, anndata) in a sandbox. You read evidence from trials run with "
    "the current prompt and write a better prompt: general practices and checks that would have "
    "avoided the failures, kept short and concrete. The prompt will be used on other datasets and "
    "tasks than the ones shown."
)

_PROMPT_RE = re.compile(re.escape(OPEN) + r"\n?(.*?)\n?" + re.escape(CLOSE), re.S)
_BLOCK_RE = re.compile(re.escape(OPEN) + r"\n(.*?)\n" + re.escape(CLOSE), re.S)


@dataclass
class Proposal:
    text: str | None  # None: every attempt failed the checks
    rejected: str | None = None  # the last text refused by the checks, for the record
    flags: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    refused: list[tuple[str, list[str]]] = field(default_factory=list)  # every refused text, with why
    hints: list[str] = field(default_factory=list)  # `flags` as the model may read them: no task values


def extract_prompt(reply: str, *, first: bool = False) -> str | None:
    """The last (or first) complete <prompt>…</prompt> block; None when there is none.

    Blocks on their own lines win over inline mentions such as "between <prompt> and </prompt>".
    """
    found = _BLOCK_RE.findall(reply) or _PROMPT_RE.findall(reply)
    if not found:
        return None
    return (found[0] if first else found[-1]).strip("\n")


def _truncated(reply: ChatReply) -> bool:
    text = reply.message.content
    cut_tag = OPEN in text and CLOSE not in text.split(OPEN)[-1]
    return (reply.stop_reason or "").lower() in TRUNCATED_STOPS or cut_tag


class Reflector:
    """Builds the reflection request, calls the model, and enforces the candidate checks."""

    def __init__(
        self,
        model: ChatModel,
        *,
        objective: str,
        max_words: int,
        copy_words: int,
        forbidden: Callable[[], list[str]],
        max_tokens: int = 16000,
        temperature: float | None = None,
        retries: int = 2,
        facts: Callable[[], list[Fact]] | None = None,
    ) -> None:
        self.model = model
        self.objective = objective
        self.max_words = max_words
        self.copy_words = copy_words
        self.forbidden = forbidden  # task texts a candidate must not copy from
        self.facts = facts or (lambda: [])  # task-specific facts a candidate must not carry (leaks.py)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self._no_prompt = ""  # why the last `_call` returned no text

    def request(
        self,
        current: str,
        evidence: list[str],
        *,
        failed_attempts: Sequence[str] = (),
        section: str | None = None,
        whole_prompt: str | None = None,
        word_budget: int | None = None,
    ) -> list[Message]:
        budget = word_budget if word_budget is not None else self.max_words
        parts = [f"# Goal of the prompt\n{self.objective.strip()}"]
        if section is not None and whole_prompt is not None:
            parts.append(
                f"# The whole prompt, for context\n<context>\n{whole_prompt}\n</context>\n\n"
                f'You rewrite only its section "{section}", shown next. Keep its heading line.'
            )
        parts.append(
            f"# Current {'section' if section else 'prompt'} ({word_count(current)} words)\n"
            f"{OPEN}\n{current}\n{CLOSE}"
        )
        parts.append("# Evidence: trials run with the current prompt\n" + "\n\n".join(evidence))
        if failed_attempts:
            parts.append(
                "# Earlier rewrites that did not beat it (do not repeat them)\n"
                + "\n".join(f"- {a}" for a in failed_attempts)
            )
        parts.append(
            "# What to return\n"
            "First say in a few sentences what general practice each failure calls for. Keep what works, "
            "add or sharpen what the evidence asks for, drop what does not help. At most "
            f"{budget} words. Do not copy sentences from the task objectives or the evidence: write rules "
            "that transfer to other datasets and tasks. Then return the complete new "
            f"{'section' if section else 'prompt'} in this form:\n{OPEN}\n(the new text)\n{CLOSE}"
        )
        return [Message(role="system", content=SYSTEM), Message(role="user", content="\n\n".join(parts))]

    def _call(self, messages: list[Message], usage: list[Usage]) -> str | None:
        """One answer with its prompt block, retrying with more room when the reply was cut off."""
        max_tokens = self.max_tokens
        for _ in range(self.retries + 1):
            reply = self.model.complete(messages, max_tokens=max_tokens, temperature=self.temperature)
            usage.append(reply.usage)
            text = extract_prompt(reply.message.content)
            if not _truncated(reply) and text is not None:
                return text
            if not _truncated(reply):
                messages = [
                    *messages,
                    reply.message,
                    Message(role="user", content=f"Return the new text between {OPEN} and {CLOSE}."),
                ]
            else:
                max_tokens = min(MAX_TOKENS_CAP, max_tokens * 2)
        self._no_prompt = (
            f"truncated: the reply was cut off (stop reason {reply.stop_reason}) even with more output tokens"
            if _truncated(reply)
            else f"no {OPEN} block in the reply (stop reason {reply.stop_reason}), even when asked for one"
        )
        return None

    def propose(
        self,
        current: str,
        evidence: list[str],
        *,
        failed_attempts: Sequence[str] = (),
        section: str | None = None,
        whole_prompt: str | None = None,
        word_budget: int | None = None,
    ) -> Proposal:
        budget = word_budget if word_budget is not None else self.max_words
        messages = self.request(
            current,
            evidence,
            failed_attempts=failed_attempts,
            section=section,
            whole_prompt=whole_prompt,
            word_budget=budget,
        )
        usage: list[Usage] = []
        flags: list[str] = []
        hints: list[str] = []
        refused: list[tuple[str, list[str]]] = []
        attempts = 0
        text: str | None = None
        for _ in range(self.retries + 1):
            attempts += 1
            text = self._call(messages, usage)
            if text is None:
                flags = hints = [self._no_prompt]
                break
            found = (
                length_flag(text, budget),
                copy_flag(text, self.forbidden(), self.copy_words),
                leak_flag(text, self.facts()),
            )
            flags = [f for f in found if f]
            hints = [f for f in (*found[:2], leak_flag(text, self.facts(), quote=False)) if f]
            if not flags:
                return Proposal(text=text, usage=sum(usage, Usage()), attempts=attempts, refused=refused)
            refused.append((text, flags))
            messages = [
                *messages,
                Message(role="assistant", content=f"{OPEN}\n{text}\n{CLOSE}"),
                Message(
                    role="user",
                    content="This text cannot be used: "
                    + "; ".join(hints)
                    + f". Fix that and return the whole text again between {OPEN} and {CLOSE}.",
                ),
            ]
        return Proposal(text=None, rejected=text, flags=flags, usage=sum(usage, Usage()), attempts=attempts,
                        refused=refused, hints=hints)
