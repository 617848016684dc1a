"""A container's mounts, from every way a create request can ask for one, as Docker merges them:

- `HostConfig.Binds`: `-v HOST:/path[:ro]` (a bind; a missing host directory is created) and
  `-v NAME:/path[:ro]` (a named volume);
- `HostConfig.Mounts`: `--mount type=bind|volume|tmpfs,...` (a bind's source must exist;
  `volume-nocopy` skips filling a new volume from the image);
- `HostConfig.Tmpfs`: `--tmpfs /path[:size=64m,mode=1777]`;
- `Config.Volumes`: the image's `VOLUME`s and `-v /path`, each an *anonymous volume* (named by 64
  hex digits at create, kept in the record) unless another mount covers that path.

One destination, one mount: a second is refused (Docker's "Duplicate mount point"). Pure rules,
no I/O but the existence check of a `--mount` bind source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameter
from .spec import VOLUME_NAME, Bind

TMPFS_DEFAULTS = ("nosuid", "nodev", "noexec")
TMPFS_OPTIONS = {"size", "mode", "nr_inodes", "uid", "gid", "noexec", "exec", "nosuid", "suid", "nodev", "dev", "ro", "rw"}


@dataclass(frozen=True)
class Mount:
    type: str
    """bind | volume | tmpfs"""
    source: str
    """A host path (bind), a volume name (volume), empty (tmpfs)."""
    destination: str
    readonly: bool = False
    tmpfs_options: tuple[str, ...] = ()
    nocopy: bool = False
    anonymous: bool = False
    create_source: bool = False
    """A `-v` bind: the host directory is made when missing."""

    def shown(self, volume_path: str = "") -> dict[str, Any]:
        """The `Mounts` entry of `inspect` and `ps`."""
        if self.type == "volume":
            return {"Type": "volume", "Name": self.source, "Source": volume_path, "Destination": self.destination, "Driver": "local",
                    "Mode": "ro" if self.readonly else "z", "RW": not self.readonly, "Propagation": ""}  # fmt: skip
        if self.type == "tmpfs":
            return {"Type": "tmpfs", "Source": "", "Destination": self.destination, "Mode": ",".join(self.tmpfs_options),
                    "RW": not self.readonly, "Propagation": ""}  # fmt: skip
        return {"Type": "bind", "Source": self.source, "Destination": self.destination, "Mode": "ro" if self.readonly else "",
                "RW": not self.readonly, "Propagation": "rprivate"}  # fmt: skip


def _destination(path: Any, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidParameter(f"invalid mount config for {what}: invalid mount path: '{path}' mount path must be absolute")
    normal = os.path.normpath(path)
    if normal == "/":
        raise InvalidParameter(f"invalid mount config for {what}: invalid specification: destination can't be '/'")
    return normal


def tmpfs_options(text: str, where: str) -> tuple[str, ...]:
    options = []
    for option in filter(None, (text or "").split(",")):
        key = option.split("=", 1)[0]
        if key not in TMPFS_OPTIONS:
            raise InvalidParameter(f"invalid tmpfs option {option!r} for {where}")
        options.append(option)
    return tuple(options)


def _from_mount_object(item: Any) -> Mount:
    if not isinstance(item, dict):
        raise InvalidParameter("each of HostConfig.Mounts must be an object")
    kind = item.get("Type") or ""
    target = _destination(item.get("Target"), f'type "{kind}"')
    readonly = bool(item.get("ReadOnly"))
    source = item.get("Source") or ""
    if kind == "bind":
        if not source.startswith("/"):
            raise InvalidParameter(f'invalid mount config for type "bind": invalid mount path: \'{source}\' mount path must be absolute')
        if not os.path.exists(source):
            raise InvalidParameter(f'invalid mount config for type "bind": bind source path does not exist: {source}')
        return Mount("bind", source, target, readonly)
    if kind == "volume":
        if source and not VOLUME_NAME.match(source):
            raise InvalidParameter(f'invalid mount config for type "volume": invalid volume name {source!r}')
        nocopy = bool((item.get("VolumeOptions") or {}).get("NoCopy"))
        return Mount("volume", source, target, readonly, nocopy=nocopy, anonymous=not source)
    if kind == "tmpfs":
        if source:
            raise InvalidParameter('invalid mount config for type "tmpfs": source must not be specified')
        options = item.get("TmpfsOptions") or {}
        extra = []
        if options.get("SizeBytes"):
            if not isinstance(options["SizeBytes"], int) or options["SizeBytes"] < 0:
                raise InvalidParameter('invalid mount config for type "tmpfs": invalid size')
            extra.append(f"size={options['SizeBytes']}")
        if options.get("Mode"):
            extra.append(f"mode={int(options['Mode']):o}")
        return Mount("tmpfs", "", target, readonly, tmpfs_options=tuple(extra))
    raise InvalidParameter(f"mount type unknown: {kind!r}: bind, volume or tmpfs")


def mounts_of(host_config: dict[str, Any], config: dict[str, Any], anonymous: dict[str, str]) -> list[Mount]:
    """Every mount, parents before children; InvalidParameter for a bad or duplicate one.
    `anonymous`: the names given to anonymous volumes, by destination (missing ones are
    returned with an empty source, for `create` to name)."""
    found: dict[str, Mount] = {}

    def add(mount: Mount) -> None:
        if mount.destination in found:
            raise InvalidParameter(f"Duplicate mount point: {mount.destination}")
        found[mount.destination] = mount

    for text in host_config.get("Binds") or []:
        bind = Bind.parse(text)
        destination = _destination(bind.destination, "-v")
        add(Mount("volume" if bind.volume else "bind", bind.source, destination, bind.readonly, create_source=not bind.volume))
    for item in host_config.get("Mounts") or []:
        mount = _from_mount_object(item)
        if mount.anonymous:
            mount = Mount("volume", anonymous.get(mount.destination, ""), mount.destination, mount.readonly,
                          nocopy=mount.nocopy, anonymous=True)  # fmt: skip
        add(mount)
    tmpfs = host_config.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise InvalidParameter("HostConfig.Tmpfs must be an object of path -> options")
    for path, options in tmpfs.items():
        destination = _destination(path, "--tmpfs")
        add(Mount("tmpfs", "", destination, "ro" in (options or "").split(","), tmpfs_options=tmpfs_options(options, path)))
    for path in config.get("Volumes") or {}:
        destination = _destination(path, "VOLUME")
        if destination not in found:
            found[destination] = Mount("volume", anonymous.get(destination, ""), destination, anonymous=True)
    return sorted(found.values(), key=lambda mount: (mount.destination.count("/"), mount.destination))
