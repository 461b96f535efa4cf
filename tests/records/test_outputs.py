"""The one renderer of kernel outputs: what every reader of a trial shows of a cell."""

from __future__ import annotations

from cellprompt.records.outputs import clip, output_text, outputs_text, strip_ansi


def test_clip_keeps_head_and_tail_and_counts_the_cut() -> None:
    text = "a" * 50 + "b" * 50
    assert clip(text, 100) == text
    cut = clip(text, 20, head=0.25)
    assert cut.startswith("aaaaa\n") and cut.endswith("\n" + "b" * 15)
    assert "[80 characters omitted]" in cut


def test_clip_with_no_tail_keeps_nothing_of_the_end() -> None:
    assert clip("abcdef", 3, head=1.0) == "abc\n… [3 characters omitted] …\n"


def test_outputs_read_as_a_notebook_shows_them() -> None:
    outputs = [
        {"type": "stream", "name": "stdout", "text": "hello\n"},
        {"output_type": "execute_result", "data": {"text/plain": "42"}},
        {"type": "display_data", "data": {"text/plain": "<Figure>", "image/png": "AAAA"}},
        {"type": "error", "ename": "ValueError", "evalue": "bad",
         "traceback": ["\x1b[31mTraceback\x1b[0m", "ValueError: bad"]},
    ]
    assert outputs_text(outputs) == "hello\n42\n[figure]\nTraceback\nValueError: bad"
    assert outputs_text(outputs, figure="") == "hello\n42\nTraceback\nValueError: bad"
    assert output_text({"type": "error", "ename": "E", "evalue": "v"}) == "E: v"
    assert strip_ansi("\x1b[1;31mred\x1b[?25h") == "red"
