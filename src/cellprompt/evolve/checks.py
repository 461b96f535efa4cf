"""Guards on candidate prompts: the length budget and copying from task texts.

Reflection models tend to grow prompts without bound and to paste phrases of
the training tasks into the prompt, which scores well on exactly those tasks
and nowhere else; both are caught before a candidate costs any trial.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z0-9_]+(?:[.'\-][A-Za-z0-9_]+)*")


def words(text: str) -> list[str]:
    """Lower-cased words: punctuation and markup do not hide a copy."""
    return [w.lower() for w in _WORD.findall(text)]


def text_key(text: str) -> str:
    """A candidate's identity for deduplication: a whitespace-only variant is the same prompt."""
    return " ".join(text.split())


def word_count(text: str) -> int:
    return len(words(text))


def copied_spans(candidate: str, sources: list[str], min_words: int = 12) -> list[str]:
    """The longest runs of >= `min_words` consecutive words the candidate shares with any source."""
    cand = words(candidate)
    if len(cand) < min_words:
        return []
    grams: set[tuple[str, ...]] = set()
    for source in sources:
        src = words(source)
        grams.update(tuple(src[i : i + min_words]) for i in range(len(src) - min_words + 1))
    if not grams:
        return []
    spans: list[str] = []
    i = 0
    while i <= len(cand) - min_words:
        if tuple(cand[i : i + min_words]) in grams:
            end = i + min_words
            while end < len(cand) and tuple(cand[end - min_words + 1 : end + 1]) in grams:
                end += 1
            spans.append(" ".join(cand[i:end]))
            i = end
        else:
            i += 1
    return spans


def length_flag(text: str, max_words: int) -> str | None:
    n = word_count(text)
    return f"length: {n} words over the budget of {max_words}" if n > max_words else None


def copy_flag(text: str, sources: list[str], min_words: int) -> str | None:
    spans = copied_spans(text, sources, min_words)
    if not spans:
        return None
    return f'copied from a task text: "{spans[0][:200]}"' + (
        f" (+{len(spans) - 1} more)" if len(spans) > 1 else ""
    )
