"""Progress of pull and push as the CLI shows it (implementations of `client.progress.Progress`).

- On a terminal: one rich progress bar per layer (`<12 hex>: Downloading ━━━━ 1.2/3.4 MB`),
  which turns into the layer's final status ("Pull complete", "Layer already exists", ...).
- Anywhere else (a pipe, a file, CI): one plain line per layer when it is done,
  `<12 hex>: Pull complete`, with no escape sequences, so logs stay readable and diffable.
- `--quiet`: nothing.

`reporter()` chooses. The callbacks run on the event loop and only update counters or print a
line; rich redraws from its own thread. This module never talks to a registry or the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console, RenderableType
from rich.progress import BarColumn, DownloadColumn, ProgressColumn, Task, TaskID, TextColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from ..progress import NoProgress, Progress
from .output import short_id


class LineProgress:
    """One line per finished item: `<12 hex>: <status>`."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def start(self, id: str, total: int) -> None:
        pass

    def advance(self, id: str, n: int) -> None:
        pass

    def done(self, id: str, status: str) -> None:
        print(f"{short_id(id)}: {status}", file=self.out, flush=True)


class _WhileRunning(ProgressColumn):
    """A column shown only until its task finishes (finished rows show just their status)."""

    def __init__(self, inner: ProgressColumn) -> None:
        super().__init__()
        self.inner = inner

    def render(self, task: Task) -> RenderableType:
        return Text("") if task.finished else self.inner.render(task)


class BarProgress:
    """A rich progress bar per item while it moves, its status once done."""

    def __init__(self, out: IO[str], verb: str) -> None:
        self.verb = verb
        self._tasks: dict[str, TaskID] = {}
        self._totals: dict[str, int] = {}
        self.progress = RichProgress(
            TextColumn("{task.description}: {task.fields[status]}"),
            _WhileRunning(BarColumn(bar_width=40)),
            _WhileRunning(DownloadColumn()),
            console=Console(file=out),
            refresh_per_second=8,
        )

    def start(self, id: str, total: int) -> None:
        self._totals[id] = total
        task = self._tasks.get(id)
        if task is None:
            self._tasks[id] = self.progress.add_task(short_id(id), total=total or None, status=self.verb)
        else:
            self.progress.reset(task, total=total or None, status=self.verb)

    def advance(self, id: str, n: int) -> None:
        task = self._tasks.get(id)
        if task is not None:
            self.progress.advance(task, n)

    def done(self, id: str, status: str) -> None:
        if id not in self._tasks:
            self.start(id, 0)
        total = self._totals.get(id) or 1
        self.progress.update(self._tasks[id], total=total, completed=total, status=status)


def is_terminal(out: IO[str]) -> bool:
    """A terminal that can draw bars: a TTY, and not TERM=dumb."""
    try:
        return out.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


@contextmanager
def reporter(out: IO[str], *, quiet: bool, verb: str) -> Iterator[Progress]:
    """The Progress for `out`: nothing when quiet, bars on a terminal, plain lines otherwise."""
    if quiet:
        yield NoProgress()
        return
    if not is_terminal(out):
        yield LineProgress(out)
        return
    bars = BarProgress(out, verb)
    with bars.progress:
        yield bars
