"""The OCI runtime spec (a bundle's `config.json`) for a container: pure, no I/O.

From Docker's defaults: the namespaces (pid, ipc, uts, mount, and network unless
`--network host`), its capability set, masked and read-only /proc paths, the standard mounts,
and the bind-mounted /etc/hosts, /etc/hostname and /etc/resolv.conf; plus what the container
asks for (args, env, cwd, user, tty, binds, read-only root).
"""

from __future__ import annotations

import os
import re
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
VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
BIND_OPTIONS = {"ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy"}


@dataclass(frozen=True)
class Bind:
    source: str
    """An absolute host path, or a volume's name (`volume` is then True)."""
    destination: str
    readonly: bool = False
    volume: bool = False

    @classmethod
    def parse(cls, text: str) -> Bind:
        """`HOST:CONTAINER[:OPTIONS]` or `VOLUME:CONTAINER[:OPTIONS]`, as `-v` takes them."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            raise InvalidParameter(f"invalid volume specification: '{text}'")
        source, destination = parts[0], parts[1]
        options = set(parts[2].split(",")) if len(parts) == 3 else set()
        volume = not source.startswith("/")
        if volume and not VOLUME_NAME.match(source):
            raise InvalidParameter(
                f"invalid volume specification: '{text}': {source!r} is neither an absolute host path nor a volume "
                "name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
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
        return cls(source, destination, "ro" in options, volume)

    def spec(self) -> str:
        return f"{self.source}:{self.destination}{':ro' if self.readonly else ''}"

    def to_oci(self) -> dict[str, Any]:
        options = ["rbind", "rprivate"] + (["ro"] if self.readonly else [])
        return {"destination": self.destination, "type": "bind", "source": self.source, "options": options}


@dataclass(frozen=True)
class Tmpfs:
    destination: str
    options: tuple[str, ...] = ()
    """Docker's defaults (nosuid, nodev, noexec) come first; the user's options win."""

    def to_oci(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", *self.options]}  # fmt: skip


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
    netns_path: str | None = None
    """A network namespace made beforehand (bridge networks) to join; None: a new, empty one."""
    etc_files: dict[str, str] = field(default_factory=dict)
    """container path -> host file (hosts, hostname, resolv.conf)."""
    binds: tuple[Bind | Tmpfs, ...] = ()
    """The container's mounts (binds, volumes as binds, tmpfs), parents first."""
    limits: Limits | None = None
    cgroups_path: str | None = None

    def to_oci(self) -> dict[str, Any]:
        namespaces = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")]
        if self.netns_path:
            namespaces.append({"type": "network", "path": self.netns_path})
        elif not self.host_network:
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
        mounts.extend(mount.to_oci() for mount in self.binds)
        resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
        if self.limits is not None:
            resources.update(self.limits.to_oci())
        linux: dict[str, Any] = {"resources": resources, "namespaces": namespaces, "maskedPaths": MASKED, "readonlyPaths": READONLY}
        if self.cgroups_path:
            linux["cgroupsPath"] = self.cgroups_path
        return {
            "ociVersion": "1.0.2",
            "process": self.process.to_oci(),
            "root": {"path": self.rootfs, "readonly": self.readonly},
            "hostname": self.hostname,
            "mounts": mounts,
            "linux": linux,
        }


MIN_MEMORY = 6 * 1024 * 1024
CPU_PERIOD = 100_000


@dataclass(frozen=True)
class Limits:
    """HostConfig's resource limits, as runc's cgroup settings (cgroup v1 here; runc maps the
    same settings onto cgroup v2 files on a v2 host)."""

    memory: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    cpu_shares: int = 0
    pids_limit: int = 0

    @classmethod
    def from_host_config(cls, host_config: dict[str, Any]) -> Limits:
        def number(key: str) -> int:
            value = host_config.get(key) or 0
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidParameter(f"{key} must be an integer, got {value!r}")
            return value

        limits = cls(number("Memory"), number("MemorySwap"), number("NanoCpus"), number("CpuQuota"), number("CpuPeriod"),
                     number("CpuShares"), number("PidsLimit"))  # fmt: skip
        if limits.memory < 0 or 0 < limits.memory < MIN_MEMORY:
            raise InvalidParameter("Minimum memory limit allowed is 6MB")
        if limits.memory_swap and limits.memory_swap != -1 and limits.memory_swap < limits.memory:
            raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
        if limits.nano_cpus < 0 or (limits.nano_cpus and (limits.cpu_quota or limits.cpu_period)):
            raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
        if limits.nano_cpus > (os.cpu_count() or 1) * 1_000_000_000:
            raise InvalidParameter(f"Range of CPUs is from 0.01 to {os.cpu_count() or 1}.00, as there are only {os.cpu_count() or 1} CPUs available")
        if limits.pids_limit < -1:
            raise InvalidParameter("PidsLimit must be -1 (unlimited), 0 (the default) or positive")
        return limits

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.memory:
            memory: dict[str, Any] = {"limit": self.memory}
            if self.memory_swap:
                memory["swap"] = self.memory_swap
            out["memory"] = memory
        cpu: dict[str, Any] = {}
        if self.nano_cpus:
            cpu["period"] = CPU_PERIOD
            cpu["quota"] = self.nano_cpus * CPU_PERIOD // 1_000_000_000
        if self.cpu_quota:
            cpu["quota"] = self.cpu_quota
            cpu["period"] = self.cpu_period or CPU_PERIOD
        if self.cpu_shares:
            cpu["shares"] = self.cpu_shares
        if cpu:
            out["cpu"] = cpu
        if self.pids_limit:
            out["pids"] = {"limit": self.pids_limit}
        return out


def merge_env(image_env: list[str], container_env: list[str]) -> list[str]:
    """Docker's merge: the container's variables win, the image's others come first."""
    keys = {entry.partition("=")[0] for entry in container_env}
    merged = [entry for entry in image_env if entry.partition("=")[0] not in keys] + list(container_env)
    return merged


def command_of(config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd of a merged container config."""
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
