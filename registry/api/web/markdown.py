"""Repository READMEs: Markdown to HTML that is safe to put in a page.

Two layers, each enough alone for the common attacks: markdown-it-py renders CommonMark (plus
tables and strikethrough) with raw HTML turned off, so `<script>` in the source is printed as
text, and refuses `javascript:`/`vbscript:`/`data:` links; nh3 (ammonia) then keeps only an
allow-list of tags and attributes and the URL schemes http, https and mailto, and marks every
link `rel="noopener noreferrer nofollow"`. The page's Content-Security-Policy loads no script
and no image from elsewhere on top of that.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(["table", "strikethrough"])


def render_markdown(source: str) -> Markup:
    """The README as sanitized HTML, ready to print unescaped."""
    html = _renderer.render(source)
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(cleaned)
