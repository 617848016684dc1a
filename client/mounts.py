"""Which repositories of which registries are known to hold a blob: push's cross-repo mount hints.

Kept as `client-mounts.json` under the store root, `{"sha256:...": ["host/repo", ...]}`, most
recent first and a few per blob. Pull records where it got each blob and push where it put
each, so a later push of the same blob to another repository of that registry can
`POST ?mount=<digest>&from=<repo>` instead of uploading. Read-modify-write happens under an
flock on `client-mounts.json.lock` and the file is replaced atomically, so concurrent
processes lose nothing. A hint can be stale (the blob was deleted there): push then uploads.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

FILE_NAME = "client-mounts.json"
KEEP_PER_BLOB = 8


class MountHints:
    def __init__(self, root: Path) -> None:
        self.path = Path(root) / FILE_NAME
        self._lock_path = Path(root) / (FILE_NAME + ".lock")

    def _read(self) -> dict[str, list[str]]:
        try:
            document = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def sources(self, digest: str, registry: str, *, exclude: str | None = None) -> list[str]:
        """Repositories (without the registry) of `registry` known to hold `digest`."""
        prefix = registry + "/"
        return [
            name[len(prefix) :]
            for name in self._read().get(digest, [])
            if name.startswith(prefix) and name[len(prefix) :] != exclude
        ]

    def record(self, digests: Iterable[str], registry: str, repository: str) -> None:
        """`registry/repository` holds each of `digests`."""
        name = f"{registry}/{repository}"
        digests = list(dict.fromkeys(digests))
        if not digests:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            document = self._read()
            changed = False
            for digest in digests:
                known = document.get(digest, [])
                if known[:1] == [name]:
                    continue
                document[digest] = [name, *[other for other in known if other != name]][:KEEP_PER_BLOB]
                changed = True
            if changed:
                self._write(document)

    def _write(self, document: dict[str, list[str]]) -> None:
        descriptor, temporary = tempfile.mkstemp(prefix=".client-mounts.", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "w") as handle:
                json.dump(document, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
