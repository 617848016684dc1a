"""What every `dockyard` command shares: its parsed options, the store, the client settings, and
the one way user input (`alpine`, `acme/app:1`, an image ID) becomes a name the store knows.

Heavy modules (the store, aiohttp through the client) are imported on first use, so `--help`
and usage errors stay fast. This module prints nothing except through `error`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ocispec.reference import InvalidReference

from ..errors import ClientError

if TYPE_CHECKING:
    from ocispec.reference import ImageReference

    from ..daemon import DaemonClient
    from ..registry_http import ClientSettings
    from ..store import ImageStore


class UsageError(ClientError):
    """A combination of options the parser cannot express (reported with exit status 2)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is meant for the user: the client's and the store's.

    The store's are only looked up when its module is loaded: an instance cannot exist otherwise.
    """
    store_errors = sys.modules.get("client.store.errors")
    ours = (ClientError, InvalidReference)
    return (*ours, store_errors.StoreError) if store_errors is not None else ours


def describe(error: BaseException) -> str:
    """The one line that `Error: ` is followed by (a message of several lines is joined)."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(error).__name__


@dataclass
class Context:
    args: argparse.Namespace
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    err: IO[str] = field(default_factory=lambda: sys.stderr)
    _store: Any = None
    _daemon: Any = None

    @property
    def store_root(self) -> Path:
        root = getattr(self.args, "store", None)
        if root is not None:
            return Path(root)
        from ..store import default_root

        return default_root()

    def store(self) -> ImageStore:
        if self._store is None:
            from ..store import ImageStore

            self._store = ImageStore(self.store_root)
        return self._store

    @property
    def uses_daemon(self) -> bool:
        """Commands talk to the daemon unless `--store DIR` asks for a store directly."""
        return getattr(self.args, "store", None) is None

    @property
    def daemon_host(self) -> str:
        import os

        from ..daemon import DEFAULT_HOST

        return getattr(self.args, "host", None) or os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST

    def daemon(self) -> DaemonClient:
        if self._daemon is None:
            from ..daemon import DaemonClient

            self._daemon = DaemonClient(self.daemon_host)
        return self._daemon

    def daemon_image_name(self, text: str) -> str:
        return str(self.reference(text))

    def registry_auth(self, image: str) -> dict[str, str] | None:
        """The saved credentials of `image`'s registry, for the daemon's X-Registry-Auth."""
        from ..credentials import load_credentials

        reference = self.reference(image)
        config = getattr(self.args, "config", None)
        credentials = load_credentials(reference.registry, Path(config) if config is not None else None)
        if credentials is None:
            return None
        found = {"serveraddress": reference.registry}
        if credentials.username:
            found["username"] = credentials.username
        if credentials.password is not None:
            found["password"] = credentials.password
        if credentials.identity_token:
            found["identitytoken"] = credentials.identity_token
        return found

    def settings(self) -> ClientSettings:
        from ..registry_http import ClientSettings

        insecure = [*getattr(self.args, "global_insecure", []), *getattr(self.args, "insecure", [])]
        config = getattr(self.args, "config", None)
        return ClientSettings(config_dir=Path(config) if config is not None else None, insecure_registries=frozenset(insecure))

    def reference(self, text: str, *, default_tag: str | None = "latest") -> ImageReference:
        from ocispec.reference import ImageReference

        return ImageReference.parse(text, default_registry=self.settings().default_registry, default_tag=default_tag)

    def locate(self, text: str) -> str:
        """What to hand the store for `text`: its full name when the store has an image by that
        name, else `text` itself (an image ID or prefix; the store's error then names `text`)."""
        try:
            name = str(self.reference(text))
        except InvalidReference:
            return text
        try:
            self.store().resolve(name)
        except LookupError:
            return text
        return name

    def each(self, items: list[str], action: Callable[[str], object]) -> int:
        """docker's way with several arguments: `action` for each; a failure is one `Error: ...`
        line and the rest go on; 1 if any failed, else 0."""
        status = 0
        for item in items:
            try:
                action(item)
            except user_errors() as error:
                self.error(error)
                status = 1
        return status

    def repository_and_tag(self, text: str | None) -> tuple[str | None, str | None]:
        """`REPOSITORY[:TAG]` as the daemon's commit and import take it (None, None when absent)."""
        if not text:
            return None, None
        reference = self.reference(text)
        return reference.name, reference.tag

    def print(self, *parts: object) -> None:
        print(*parts, file=self.out, flush=True)

    def error(self, error: BaseException | str) -> None:
        message = error if isinstance(error, str) else describe(error)
        print(f"Error: {message}", file=self.err, flush=True)
