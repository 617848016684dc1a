"""Jinja2 templates of the web page, with HTML autoescaping always on, and their filters.

Everything a template prints is escaped unless marked safe, and no template marks
user-provided text safe: descriptions, labels, env values and history lines are shown as text.
The one exception is a README, which only reaches the page through `markdown` (sanitized).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from .markdown import render_markdown

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024**exponent:.1f} {('B', 'KiB', 'MiB', 'GiB', 'TiB')[exponent]}"


def timestamp(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    elapsed = max(0, time.time() - seconds)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if elapsed >= length:
            count = int(elapsed // length)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def short_digest(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}" if encoded else digest


def created_time(text: str) -> str:
    """An RFC 3339 `created` of an image config, to the second."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def command(words: list[str] | None) -> str:
    """An exec-form command as one line a person can read."""
    if not words:
        return ""
    return " ".join(word if word and not any(c in word for c in " \t\"'\\$") else repr(word) for word in words)


def url(path: str, **params: object) -> str:
    """`path` with a query string of the non-empty `params` (for pagers, sorts and filters)."""
    kept = {key: str(value) for key, value in params.items() if value not in (None, "") and not (key == "page" and value == 1)}
    return f"{path}?{urlencode(kept)}" if kept else path


def breakable(text: str) -> Markup:
    """Text that may wrap after `/` and `:` (a pull command on a phone) instead of mid-word."""
    return Markup("").join(Markup("{}<wbr>").format(part) if part in "/:" else part for part in re.split(r"([/:])", text))


def count(value: int) -> str:
    """A count as Docker Hub prints pulls: 999, 1.2K, 10K, 3.4M."""
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if value >= limit:
            shown = value / limit
            return f"{shown:.1f}".removesuffix(".0") + suffix if shown < 10 else f"{int(shown)}{suffix}"
    return str(value)


ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters.update(
    size=human_size, timestamp=timestamp, iso=iso, ago=ago, short_digest=short_digest, created=created_time, command=command,
    count=count, breakable=breakable,
)
ENVIRONMENT.filters["markdown"] = render_markdown
ENVIRONMENT.globals.update(url=url)


def render(template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    html = ENVIRONMENT.get_template(template).render(context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)
