"""How the `dockyard` CLI words things: tables, sizes, ages, names and truncation, as Docker does.

Pure functions of their arguments (the current time is passed in): no I/O, no store, no network,
so the formats are tested without running a command.

- `table` pads columns like Docker's tabwriter (minimum width 10, three spaces of padding).
- `human_size`, `human_duration`, `ago` (from `client.human`, shared with the engine's API).
- `familiar` turns the store's full names into the short form Docker shows
  (`docker.io/library/alpine:latest` -> `alpine:latest`); other registries' names are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ocispec.names import familiar  # noqa: F401 - part of this module's vocabulary

from ..human import ago, human_duration, human_size, parse_time  # noqa: F401 - part of this module's vocabulary

DOCKER_HUB = "docker.io"
NONE = "<none>"
MISSING = "<missing>"
ELLIPSIS = "…"



def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, min_width: int = 10, padding: int = 3) -> str:
    """Rows under a header, every column but the last padded to its widest cell plus `padding`."""
    lines = [list(header), *[list(row) for row in rows]]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    out = []
    for line in lines:
        cells = [cell.ljust(max(widths[i] + padding, min_width)) for i, cell in enumerate(line[:-1])]
        out.append(("".join(cells) + line[-1]).rstrip())
    return "\n".join(out)


def ellipsis(text: str, width: int) -> str:
    """`text` cut to `width` characters, the last one an ellipsis when it was cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + ELLIPSIS


def one_line(text: str) -> str:
    return " ".join(text.split())


def short_id(digest: str) -> str:
    """The 12 hex digits Docker shows for an image ID or layer digest."""
    return digest.split(":", 1)[-1][:12]


def split_name(name: str) -> tuple[str, str | None, str | None]:
    """`host/repo:tag` -> (`host/repo`, tag, None); `host/repo@digest` -> (`host/repo`, None, digest)."""
    if "@" in name:
        repository, digest = name.split("@", 1)
        return repository, None, digest
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], None
    return name, None, None


IMAGES_HEADER = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
HISTORY_HEADER = ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")
HISTORY_WIDTH = 45


def images_lines(rows: Sequence[Sequence[str]], *, quiet: bool) -> list[str]:
    """`docker images`: the table, or (quiet) each image ID once."""
    if quiet:
        return list(dict.fromkeys(row[2] for row in rows))
    return [table(IMAGES_HEADER, rows)]


def history_row(image: str, created: object, created_by: str, size: int, comment: str, *, no_trunc: bool, now: datetime) -> tuple[str, ...]:
    """One line of `docker history`: the command on one line, cut to the column unless `no_trunc`."""
    command = one_line(created_by)
    return (image, ago(created, now), command if no_trunc else ellipsis(command, HISTORY_WIDTH), human_size(size), comment)


def history_lines(rows: Sequence[Sequence[str]], *, quiet: bool) -> list[str]:
    """`docker history`: the table, or (quiet) the image column."""
    if quiet:
        return [row[0] for row in rows]
    return [table(HISTORY_HEADER, rows)]
