"""A prompt as named sections (its markdown `## ` headings), so GEPA can evolve and merge them apart.

`join_sections(split_sections(p)) == p` for every prompt: no byte is lost or moved.
"""

from __future__ import annotations

PREAMBLE = "preamble"


def split_sections(text: str) -> dict[str, str]:
    """Component name -> text; the heading line stays in its section's text."""
    sections: dict[str, str] = {}
    name = PREAMBLE
    buf: list[str] = []

    def flush() -> None:
        if buf or name != PREAMBLE:
            key, n = name, 2
            while key in sections:
                key, n = f"{name} ({n})", n + 1
            sections[key] = "".join(buf)

    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            flush()
            name, buf = line[3:].strip() or "section", [line]
        else:
            buf.append(line)
    flush()
    if not sections:
        sections[PREAMBLE] = text
    return sections


def join_sections(sections: dict[str, str]) -> str:
    """Sections in their order; a section that lost its final newline gets one back before the next."""
    parts = list(sections.values())
    out = ""
    for i, part in enumerate(parts):
        if out and not out.endswith("\n") and i > 0:
            out += "\n"
        out += part
    return out
