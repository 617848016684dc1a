"""The OCI runtime spec (a bundle's `config.json`) for a container: pure, no I/O.

From Docker's defaults: the namespaces (pid, ipc, uts, mount, and network unless
`--network host`), its capability set, masked and read-only /proc paths, the standard mounts,
and the bind-mounted /etc/hosts, /etc/hostname and /etc/resolv.conf; plus what the container
asks for (args, env, cwd, user, tty, binds, read-only root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParameter

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip
MASKED = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
]  # fmt: skip
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
BIND_OPTIONS = {"ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy"}


@dataclass(frozen=True)
class Bind:
    source: str
    destination: str
    readonly: bool = False

    @classmethod
    def parse(cls, text: str) -> Bind:
        """`HOST:CONTAINER[:OPTIONS]` as `-v` takes it (absolute paths on both sides)."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            raise InvalidParameter(f"invalid volume specification: '{text}'")
        source, destination = parts[0], parts[1]
        options = set(parts[2].split(",")) if len(parts) == 3 else set()
        if not source.startswith("/"):
            raise InvalidParameter(
                f"invalid volume specification: '{text}': named volumes are not supported by this daemon yet, "
                "bind an absolute host path"
            )
        if not destination.startswith("/"):
            raise InvalidParameter(
                f"invalid volume specification: '{text}': invalid mount path: '{destination}' mount path must be absolute"
            )
        if destination == "/":
            raise InvalidParameter(f"invalid volume specification: '{text}': invalid mount path: '/'")
        unknown = options - BIND_OPTIONS
        if unknown or {"ro", "rw"} <= options:
            raise InvalidParameter(f"invalid volume specification: '{text}': invalid mode: {parts[2]}")
        return cls(source, destination, "ro" in options)


@dataclass(frozen=True)
class ProcessSpec:
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    tty: bool = False
    console_size: tuple[int, int] | None = None

    def to_oci(self) -> dict[str, Any]:
        process: dict[str, Any] = {
            "terminal": self.tty,
            "user": {"uid": self.uid, "gid": self.gid},
            "args": self.args,
            "env": self.env,
            "cwd": self.cwd or "/",
            "capabilities": {key: list(CAPABILITIES) for key in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        }
        if self.additional_gids:
            process["user"]["additionalGids"] = list(self.additional_gids)
        if self.tty and self.console_size:
            process["consoleSize"] = {"height": self.console_size[0], "width": self.console_size[1]}
        return process


@dataclass(frozen=True)
class RuntimeSpec:
    process: ProcessSpec
    rootfs: str
    hostname: str
    readonly: bool = False
    host_network: bool = False
    etc_files: dict[str, str] = field(default_factory=dict)
    """container path -> host file (hosts, hostname, resolv.conf)."""
    binds: tuple[Bind, ...] = ()

    def to_oci(self) -> dict[str, Any]:
        namespaces = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")]
        if not self.host_network:
            namespaces.append({"type": "network"})
        mounts: list[dict[str, Any]] = [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        ]  # fmt: skip
        for destination, source in self.etc_files.items():
            mounts.append({"destination": destination, "type": "bind", "source": source, "options": ["rbind", "rprivate"]})
        for bind in self.binds:
            options = ["rbind", "rprivate"] + (["ro"] if bind.readonly else [])
            mounts.append({"destination": bind.destination, "type": "bind", "source": bind.source, "options": options})
        return {
            "ociVersion": "1.0.2",
            "process": self.process.to_oci(),
            "root": {"path": self.rootfs, "readonly": self.readonly},
            "hostname": self.hostname,
            "mounts": mounts,
            "linux": {
                "resources": {"devices": [{"allow": False, "access": "rwm"}]},
                "namespaces": namespaces,
                "maskedPaths": MASKED,
                "readonlyPaths": READONLY,
            },
        }


def merge_env(image_env: list[str], container_env: list[str]) -> list[str]:
    """Docker's merge: the container's variables win, the image's others come first."""
    keys = {entry.partition("=")[0] for entry in container_env}
    merged = [entry for entry in image_env if entry.partition("=")[0] not in keys] + list(container_env)
    return merged


def command_of(config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd of a merged container config."""
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
