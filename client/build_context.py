"""Build contexts: `.dockerignore` rules as Docker applies them, and the context tar a client
sends to `POST /build`.

`.dockerignore`: one pattern a line; `#` starts a comment; a leading `!` makes an exception;
patterns are cleaned paths relative to the context root (a leading `/` is dropped). `*` and `?`
match within one path component, `[...]` a class, `**` any number of components (zero
included), `\\` escapes. A path is excluded when the LAST pattern that matches it -- or that
matches one of its parent directories -- is not an exception (moby's patternmatcher rules).

`write_context` tars a directory minus what the rules exclude (the Dockerfile and
`.dockerignore` are always sent, as the docker CLI does), streaming into any binary file.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class _Pattern:
    text: str
    exception: bool
    regex: re.Pattern[str]


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            if pattern[index : index + 2] == "**":
                index += 2
                if pattern[index : index + 1] == "/":
                    index += 1
                    out.append("(?:.*/)?")  # zero or more whole components
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : end]
                if body.startswith("!") or body.startswith("^"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    out.append("$")
    return re.compile("".join(out))


class IgnoreRules:
    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            cleaned = posixpath.normpath(line.lstrip("/")) if line.lstrip("/") else "."
            self.patterns.append(_Pattern(cleaned, exception, _compile(cleaned)))

    @classmethod
    def from_text(cls, text: str) -> IgnoreRules:
        return cls(text.splitlines())

    @classmethod
    def of_context(cls, directory: Path) -> IgnoreRules:
        try:
            return cls.from_text((directory / ".dockerignore").read_text())
        except FileNotFoundError:
            return cls([])

    def excludes(self, path: str) -> bool:
        """Whether `path` (relative to the context root, `/`-separated) is left out."""
        path = posixpath.normpath(path.lstrip("/"))
        parts = path.split("/")
        parents = ["/".join(parts[:count]) for count in range(1, len(parts))]
        excluded = False
        for pattern in self.patterns:
            matched = bool(pattern.regex.match(path)) or any(pattern.regex.match(parent) for parent in parents)
            if matched:
                excluded = not pattern.exception
        return excluded

    def has_exceptions(self) -> bool:
        return any(pattern.exception for pattern in self.patterns)


def write_context(directory: Path, out: IO[bytes], *, dockerfile: str = "Dockerfile", extra: dict[str, bytes] | None = None) -> None:
    """Tar `directory` into `out`, minus what its `.dockerignore` excludes; `extra` files
    (e.g. a Dockerfile read from stdin) are added at the root."""
    rules = IgnoreRules.of_context(directory)
    keep = {dockerfile, ".dockerignore"}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            relative_root = os.path.relpath(root, directory)
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                relative = name if relative_root == "." else f"{relative_root}/{name}"
                if relative not in keep and rules.excludes(relative):
                    continue
                tar.add(os.path.join(root, name), arcname=relative, recursive=False)
            for name in list(dirs):
                relative = name if relative_root == "." else f"{relative_root}/{name}"
                if os.path.islink(os.path.join(root, name)):
                    dirs.remove(name)
                    continue
                # an excluded directory is still walked when an exception may bring files back
                if rules.excludes(relative) and not rules.has_exceptions():
                    dirs.remove(name)
                    continue
                if not rules.excludes(relative):
                    tar.add(os.path.join(root, name), arcname=relative, recursive=False)
        for name, data in (extra or {}).items():
            import io

            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
