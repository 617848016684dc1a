"""Sizes, durations and times as Docker words them for people, shared by the CLI and the
engine's API (`docker ps` status, `docker history` ages). Pure functions; the current time is
passed in.

- `human_size` is go-units' `HumanSizeWithPrecision(n, 3)`: decimal units, "7.8MB", "512B".
- `human_duration` is go-units' `HumanDuration` ("3 minutes", "About an hour", "2 weeks").
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def human_size(size: float) -> str:
    """Bytes in decimal units with three significant digits: 0B, 512B, 1.23MB, 7.8GB."""
    index = 0
    while size >= 1000 and index < len(_UNITS) - 1:
        size /= 1000
        index += 1
    text = f"{size:.3g}"
    if "e" in text and index < len(_UNITS) - 1:  # 999.9 rounds up to the next unit
        return f"{size / 1000:.3g}{_UNITS[index + 1]}"
    return f"{text}{_UNITS[index]}"


def human_duration(seconds: float) -> str:
    """An elapsed time as Docker words it (go-units `HumanDuration`)."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{whole // 3600 // 24 // 365} years"


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time from an image config (nanoseconds allowed, `Z` or an offset), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def ago(created: object, now: datetime) -> str:
    """`3 minutes ago` for an RFC 3339 time; `N/A` when there is none."""
    when = parse_time(created)
    if when is None or when.year <= 1:
        return "N/A"
    return human_duration((now - when).total_seconds()) + " ago"
