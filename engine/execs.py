"""exec: processes started in a running container by `runc exec`, each under its own shim
(engine.shim, mode `exec`), so an exec's output and exit code are kept like a container's.
Exec records live in memory, as dockerd keeps them, until their container is removed."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.daemon.api import start_error_exit_code as exit_code_for

from . import shimclient
from .container_config import console_size
from .errors import Conflict, InvalidParameter, NoSuchExec
from .names import new_id
from .shim import ShimSpec
from .spec import DEFAULT_PATH, ProcessSpec, merge_env
from .users import resolve_user

if TYPE_CHECKING:
    from .records import Container, ContainerFiles
    from .runc import Runc


@dataclass
class Exec:
    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    directory: Path | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    probe: bool = False
    """A health-check probe: the daemon's own, not listed among the container's execs."""

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": bool(self.config.get("Tty")),
                "entrypoint": (self.config.get("Cmd") or [""])[0],
                "arguments": (self.config.get("Cmd") or [])[1:],
                "privileged": bool(self.config.get("Privileged")),
                "user": self.config.get("User") or "",
            },
            "OpenStdin": bool(self.config.get("AttachStdin")),
            "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdout": bool(self.config.get("AttachStdout")),
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": "",
            "Pid": self.pid,
        }


class ExecMixin:
    """The exec half of `Containers` (which provides `get`, `files`, `runc` and `execs`)."""

    execs: dict[str, Exec]
    runc: Runc

    def get(self, ref: str) -> Any: ...

    def files(self, container: Container) -> ContainerFiles: ...

    def exec_create(self, ref: str, body: dict[str, Any]) -> str:
        live = self.get(ref)
        if not live.record.State.Running:
            raise Conflict(f"Container {live.record.Id} is not running")
        if live.record.State.Paused:
            raise Conflict(f"Container {live.record.Id} is paused, unpause the container before exec")
        command = body.get("Cmd")
        if not command or not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise InvalidParameter("No exec command specified")
        exec_id = new_id()
        self.execs[exec_id] = Exec(exec_id, live.record.Id, body)
        return exec_id

    def get_exec(self, exec_id: str) -> Exec:
        try:
            return self.execs[exec_id]
        except KeyError:
            raise NoSuchExec(exec_id) from None

    async def exec_start(
        self, exec_id: str, *, tty: bool | None = None, console: tuple[int, int] | None = None
    ) -> tuple[Exec, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, str | None]:
        """Start the exec; (exec, its stream when attached, the start error if any)."""
        execution = self.get_exec(exec_id)
        if execution.running or execution.exit_code is not None:
            raise Conflict(f"Exec {exec_id} has already started")
        live = self.get(execution.container_id)
        record = live.record
        if not record.State.Running:
            raise Conflict(f"Container {record.Id} is not running")
        config = execution.config
        files = self.files(record)
        user = await asyncio.to_thread(resolve_user, files.merged, config.get("User") or record.Config.get("User") or "")
        env = merge_env(list(record.Config.get("Env") or []), list(config.get("Env") or []))
        if not any(entry.startswith("PATH=") for entry in env):
            env.insert(0, DEFAULT_PATH)
        is_tty = bool(config.get("Tty")) if tty is None else tty
        if is_tty and not any(entry.startswith("TERM=") for entry in env):
            env.append("TERM=xterm")
        if not any(entry.startswith("HOME=") for entry in env):
            env.append(f"HOME={user.home}")
        process = ProcessSpec(
            args=list(config["Cmd"]),
            env=env,
            cwd=config.get("WorkingDir") or record.Config.get("WorkingDir") or "/",
            uid=user.uid,
            gid=user.gid,
            additional_gids=user.additional_gids,
            tty=is_tty,
            console_size=console or console_size(config.get("ConsoleSize")),
        )
        directory = files.exec_dir(exec_id)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "process.json").write_text(json.dumps(process.to_oci()))
        execution.directory = directory
        spec = ShimSpec(
            mode="exec", id=record.Id, runc=self.runc.binary, runc_root=str(self.runc.root),
            process=str(directory / "process.json"), tty=is_tty, stdin=bool(config.get("AttachStdin")), stdin_once=True,
            console_size=process.console_size,
        )  # fmt: skip
        await shimclient.spawn(directory, spec)
        connection = None
        if not config.get("Detach"):
            connection = await shimclient.attach(
                directory, stdin=bool(config.get("AttachStdin")), stdout=bool(config.get("AttachStdout", True)),
                stderr=bool(config.get("AttachStderr", True)),
            )  # fmt: skip
        answer = await shimclient.request(directory, "start")
        if not answer.get("ok"):
            message = f"OCI runtime exec failed: {answer.get('error')}"
            execution.exit_code = 126 if exit_code_for(message) == 125 else exit_code_for(message)
            execution.done.set()
            if connection is not None:
                connection[1].close()
            return execution, None, message
        execution.running = True
        execution.pid = int(answer.get("pid") or 0)
        asyncio.ensure_future(self._exec_monitor(execution, directory))
        return execution, connection, None

    async def _exec_monitor(self, execution: Exec, directory: Path) -> None:
        exited = None
        while exited is None:
            try:
                exited = await shimclient.request(directory, "wait")
            except (OSError, ValueError):
                exited = shimclient.read_exit(directory) or {"exit_code": 255}
        execution.running = False
        execution.exit_code = int(exited.get("exit_code", 255))
        execution.done.set()

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        execution = self.get_exec(exec_id)
        if execution.directory is None or not execution.running:
            raise Conflict(f"Exec {exec_id} is not running")
        await shimclient.request(execution.directory, "resize", h=height, w=width)
