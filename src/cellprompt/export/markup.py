"""What of a trial the report puts into the page as markup: cleaned HTML outputs, highlighted code.

Everything here comes from the agent and is hostile. A notebook's HTML output (a
pandas DataFrame is a `<table>`) is worth reading as a table, so it is passed through
nh3 (the Rust `ammonia` sanitiser) with an allow-list of layout tags only: no script,
style, iframe, form, img or link, no attribute that can run code, load a resource or
restyle the page (`on*`, `style`, `class`, `id`, `src`, `href`), and no URL scheme at
all. Code is highlighted by pygments, which escapes what it emits; its CSS is inline.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

HTML_TAGS = frozenset({
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col",
    "div", "span", "p", "br", "hr", "b", "i", "u", "s", "strong", "em", "small", "sub", "sup",
    "code", "pre", "kbd", "samp", "ul", "ol", "li", "dl", "dt", "dd", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6",
})
# only what lays a table out; nothing that names a resource, a script or our own CSS classes
HTML_ATTRIBUTES = {"th": {"colspan", "rowspan"}, "td": {"colspan", "rowspan"}, "col": {"span"},
                   "colgroup": {"span"}, "ol": {"start"}}
CODE_STYLE = "monokai"  # dark, like the report's code blocks


def sanitise_html(fragment: str) -> str:
    """`fragment` with everything but the allow-listed layout tags removed (text kept)."""
    return nh3.clean(
        fragment,
        tags=set(HTML_TAGS),
        attributes={k: set(v) for k, v in HTML_ATTRIBUTES.items()},
        url_schemes=set(),
        clean_content_tags={"script", "style", "iframe", "object", "embed", "template", "noscript"},
        strip_comments=True,
        link_rel=None,
    )


@lru_cache(maxsize=1)
def _formatter() -> HtmlFormatter:
    return HtmlFormatter(style=CODE_STYLE, nowrap=True)


def highlight_python(code: str) -> str:
    """The code as escaped HTML spans with pygments' token classes (no wrapper element)."""
    return str(highlight(code, PythonLexer(), _formatter()))


def code_css(selector: str) -> str:
    """The token colours, scoped to `selector`, for the page's inline stylesheet."""
    # IPython's `!cmd` and `%magic` are not Python: no error colouring for what the kernel accepts
    return f"{_formatter().get_style_defs(selector)}\n{selector} .err {{ color: inherit; background: none; }}"
