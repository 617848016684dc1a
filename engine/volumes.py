"""Named volumes: directories under `<data root>/volumes/<name>/_data` that outlive containers.

`volumes/<name>/volume.json` records the volume (created time, labels, options); `_data` is what
containers mount. A volume is created by `volume create` or by the first container that names it
(`-v NAME:/path`); a new, empty volume is filled from the image's content at the mount path when
that container first starts, as Docker does. A volume that any container (running or not)
references cannot be removed; `prune` removes the unreferenced ones. Only the `local` driver.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import Conflict, InvalidParameter, NotFound

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def valid_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidParameter(f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                               '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')  # fmt: skip
    return name


class Volumes:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, name: str) -> Path:
        return self.root / valid_name(name)

    def data(self, name: str) -> Path:
        return self._dir(name) / "_data"

    def exists(self, name: str) -> bool:
        return (self._dir(name) / "volume.json").is_file()

    def create(self, name: str, *, labels: dict[str, str] | None = None, driver: str = "local",
               options: dict[str, str] | None = None, anonymous: bool = False) -> dict[str, Any]:  # fmt: skip
        """Create `name` (idempotent: an existing volume is returned as it is)."""
        if driver not in ("", "local"):
            raise InvalidParameter(f"volume driver {driver!r} is not supported: only local")
        if options:
            raise InvalidParameter("the local volume driver of this daemon takes no options")
        if self.exists(name):
            return self.inspect(name)
        directory = self._dir(name)
        (directory / "_data").mkdir(parents=True, exist_ok=True)
        record = {"Name": name, "Driver": "local", "Labels": labels or {}, "Options": None, "Scope": "local",
                  "CreatedAt": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                  "Anonymous": anonymous}  # fmt: skip
        temp = directory / ".volume.json.tmp"
        temp.write_text(json.dumps(record))
        os.replace(temp, directory / "volume.json")
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        try:
            record = json.loads((self._dir(name) / "volume.json").read_text())
        except (FileNotFoundError, InvalidParameter):
            raise NotFound(f"get {name}: no such volume") from None
        record.setdefault("Anonymous", False)
        record["Mountpoint"] = str(self.data(name))
        return record

    def is_anonymous(self, name: str) -> bool:
        return bool(self.inspect(name).pop("Anonymous", False))

    def list(self) -> list[dict[str, Any]]:
        found = []
        for entry in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if (entry / "volume.json").is_file():
                found.append(self.inspect(entry.name))
        return found

    def remove(self, name: str, users: list[str], *, force: bool = False) -> None:
        if not self.exists(name):
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        shutil.rmtree(self._dir(name))

    def size(self, name: str) -> int:
        total = 0
        for root, _, files in os.walk(self.data(name)):
            for file in files:
                try:
                    total += os.lstat(os.path.join(root, file)).st_size
                except OSError:
                    continue
        return total


def fill_from_image(volume_data: Path, image_path: Path) -> None:
    """A new volume's first contents: what the image holds at the mount point (if anything)."""
    if any(volume_data.iterdir()) or not image_path.is_dir() or image_path.is_symlink():
        return
    for entry in sorted(image_path.iterdir()):
        target = volume_data / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True)
        else:
            shutil.copy2(entry, target, follow_symlinks=False)
    stat = image_path.stat()
    os.chmod(volume_data, stat.st_mode & 0o7777)
    os.chown(volume_data, stat.st_uid, stat.st_gid)
