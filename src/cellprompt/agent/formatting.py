"""What the model sees of an execution: head and tail of the text, so a traceback's end survives."""

from __future__ import annotations

from cellprompt.records.outputs import clip
from cellprompt.sandbox.base import ExecutionResult

DEFAULT_FEEDBACK_CHARS = 8000


def head_tail(text: str, limit: int = DEFAULT_FEEDBACK_CHARS) -> str:
    """Keep the first third and the last two thirds of an over-long text, saying how much was cut:
    a traceback's end is what the model needs most."""
    return clip(text, limit, head=1 / 3)


def describe_result(result: ExecutionResult, *, limit: int = DEFAULT_FEEDBACK_CHARS,
                    images_sent: bool = True) -> str:
    """The text fed back to the model for one execution."""
    status = {
        "ok": "ok",
        "error": "error",
        "timeout": "timed out (the kernel was interrupted)",
        "died": "the kernel died",
    }[result.final_status]
    body = head_tail(result.text(), limit) or "(no output)"
    n_images = len(result.images())
    lines = [f"[status: {status}]", body]
    if n_images:
        lines.append(f"[{n_images} figure(s) {'attached' if images_sent else 'produced (not shown)'}]")
    if result.state_lost:
        lines.append("[the kernel restarted: variables from earlier cells are gone]")
    return "\n".join(lines)
