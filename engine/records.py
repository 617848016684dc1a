"""What the engine knows of each container, and where it keeps it.

`containers/<id>/` under the data root:

```
config.v2.json     the `Container` record (atomically replaced on every change)
container.log      its output (engine.logs)
hostname, hosts, resolv.conf   bind-mounted into it, as Docker does
init/              its init layer: the mount points runc needs, so none lands in the diff
upper/, work/      the writable container layer and overlayfs's work dir
merged/            the overlay mount while it runs
netns              its network namespace while it runs (bridge networks)
run/<n>/           one shim's files per start (shim.json, shim.sock, exit.json, runc.log)
exec/<id>/         one exec's shim files
```

The record's JSON names are Docker's (`State`, `Config`, `HostConfig`), so `inspect` is the
record itself plus what is computed (mounts, graph driver). The daemon is the only writer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ZERO_TIME = "0001-01-01T00:00:00Z"


class ContainerState(BaseModel):
    model_config = ConfigDict(extra="allow")

    Status: str = "created"
    """created | running | paused | restarting | removing | exited | dead"""
    Running: bool = False
    Paused: bool = False
    Restarting: bool = False
    OOMKilled: bool = False
    Dead: bool = False
    Pid: int = 0
    ExitCode: int = 0
    Error: str = ""
    StartedAt: str = ZERO_TIME
    FinishedAt: str = ZERO_TIME
    Health: dict[str, Any] | None = None
    """With a health check: {"Status": starting|healthy|unhealthy, "FailingStreak", "Log"} (engine.health)."""


class EndpointConfig(BaseModel):
    """What a container asks of one network it is attached to (`NetworkingConfig`, `network connect`)."""

    model_config = ConfigDict(extra="allow")

    Aliases: list[str] | None = None
    IPAMConfig: dict[str, Any] | None = None
    """`{"IPv4Address": "10.1.2.3"}` for a fixed address."""
    Links: list[str] | None = None
    NetworkID: str = ""


class Endpoint(BaseModel):
    """A live attachment: the interface CNI made in the container's namespace."""

    network_id: str
    endpoint_id: str
    ifname: str
    ip: str
    prefix: int
    gateway: str
    mac: str


class Sandbox(BaseModel):
    """The networking of a running container: its namespace, endpoints and published ports."""

    netns: str
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    """By network name."""
    ports: dict[str, list[dict[str, str]]] = Field(default_factory=dict)
    """`"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]`, the ports actually bound."""


class Container(BaseModel):
    model_config = ConfigDict(extra="allow")

    Id: str
    Created: str
    Path: str
    Args: list[str]
    State: ContainerState = Field(default_factory=ContainerState)
    Image: str
    """The image ID (config digest)."""
    ImageRef: str = ""
    """What the container was created from, as the user named it (`ps` shows it)."""
    Name: str
    """`/name`, as Docker stores it."""
    RestartCount: int = 0
    Driver: str = "overlay2"
    Platform: str = "linux"
    Config: dict[str, Any]
    HostConfig: dict[str, Any]
    # -- the engine's own, not in Docker's inspect --
    manifest_digest: str = ""
    chain_ids: list[str] = Field(default_factory=list)
    shim_pid: int = 0
    run_dir: str = ""
    """The current (or last) shim directory."""
    runs: int = 0
    manually_stopped: bool = False
    """Stopped or killed by a user: restart policies leave it be (`always` only until the daemon restarts)."""
    networks: dict[str, EndpointConfig] = Field(default_factory=dict)
    """The networks it is attached to, by name (bridge modes only), kept while it is stopped."""
    anonymous_volumes: dict[str, str] = Field(default_factory=dict)
    """The anonymous volumes made for it (its image's VOLUMEs, `-v /path`), name by destination."""
    sandbox: Sandbox | None = None
    """Set from the moment its network namespace exists until it is torn down."""

    @property
    def name(self) -> str:
        return self.Name.lstrip("/")

    @property
    def short_id(self) -> str:
        return self.Id[:12]

    @property
    def tty(self) -> bool:
        return bool(self.Config.get("Tty"))


class ContainerFiles:
    """The paths of one container's directory."""

    def __init__(self, root: Path, container_id: str) -> None:
        self.dir = root / container_id

    @property
    def record(self) -> Path:
        return self.dir / "config.v2.json"

    @property
    def log(self) -> Path:
        return self.dir / "container.log"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def init(self) -> Path:
        return self.dir / "init"

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    @property
    def bundle(self) -> Path:
        return self.dir / "bundle"

    def run(self, number: int) -> Path:
        return self.dir / "run" / str(number)

    def exec_dir(self, exec_id: str) -> Path:
        return self.dir / "exec" / exec_id


class ContainerStore:
    """`containers/` under the data root: load all records, save one atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def files(self, container_id: str) -> ContainerFiles:
        return ContainerFiles(self.root, container_id)

    def load_all(self) -> list[Container]:
        found = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            path = Path(entry.path) / "config.v2.json"
            try:
                found.append(Container.model_validate_json(path.read_bytes()))
            except (OSError, ValueError):
                continue  # a container whose creation never finished: removed by the daemon's start-up
        return found

    def save(self, container: Container) -> None:
        path = self.files(container.Id).record
        temp = path.with_name(f".{path.name}.tmp")
        data = json.dumps(container.model_dump(mode="json"), indent=1).encode()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
