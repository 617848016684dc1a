"""The progress protocol pull and push report through, and a reporter that discards it.

One item per blob, keyed by its digest (`sha256:...`; the CLI shows the first 12 hex digits as
Docker does): `start(id, total)` once with its size in bytes, `advance(id, n)` for each `n`
bytes moved (a resumed download first advances by what was already on disk), `done(id, status)`
once at the end with what happened ("Pull complete", "Already exists", "Pushed",
"Layer already exists", "Mounted from acme/base"). `start` is called again for an item whose
transfer restarts (a re-sent upload, a corrupt partial download): it resets the count. Callbacks are plain functions called on
the event loop: they must not block.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, id: str, total: int) -> None: ...

    def advance(self, id: str, n: int) -> None: ...

    def done(self, id: str, status: str) -> None: ...


class NoProgress:
    def start(self, id: str, total: int) -> None:
        pass

    def advance(self, id: str, n: int) -> None:
        pass

    def done(self, id: str, status: str) -> None:
        pass


# Statuses, as Docker words them.
PULL_COMPLETE = "Pull complete"
ALREADY_EXISTS = "Already exists"
PUSHED = "Pushed"
LAYER_EXISTS = "Layer already exists"
MOUNTED_FROM = "Mounted from"
