"""Containers: create, start, stop, kill, restart, wait, remove, attach, logs, exec, commit.

The engine's domain: no HTTP here (the API layer maps `EngineError`s to statuses). Each
container is a `Container` record (engine.records) plus, while it runs, a shim process
(engine.shim) that is the parent of its init; the daemon watches every shim over its socket
and records the exit when the shim reports it.

Rules kept here:
- A container holds its image in the store (`ImageStore.hold`) from creation to removal, so no
  `rmi` from any process deletes the image or the snapshots under it.
- State changes happen under the container's lock and are saved (atomically) before anyone is
  told; the daemon can be killed between any two steps and `recover()` finds the truth again
  from the records, the shims' `exit.json` and their sockets.
- A container's output goes to its log from its first byte; attachments made before `start`
  are connected to the shim before the process is started, so they miss nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal as signals
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.daemon.api import start_error_exit_code as exit_code_for

from . import ports, rootfs, shimclient
from .container_config import (
    HOST_CONFIG_DEFAULTS,
    check_restart_policy,
    console_size,
    matches_filters,
    merge_config,
    network_settings,
    should_restart,
)
from .container_networks import NetworkMixin, attachments_for_create
from .errors import (
    Conflict,
    EngineError,
    InvalidParameter,
    NoSuchContainer,
    NotFound,
    NotModified,
    RuntimeFailure,
)
from .execs import Exec, ExecMixin
from .health import HealthMixin
from .images import ImageService
from .logs import read_records, select
from .mounts import Mount, mounts_of
from .names import new_id, random_name, validate_name
from .networks import Networks
from .records import Container, ContainerFiles, ContainerState, ContainerStore
from .runc import Runc, parse_signal
from .shim import ShimSpec, now_text
from .spec import DEFAULT_PATH, Bind, Limits, ProcessSpec, RuntimeSpec, Tmpfs, command_of
from .users import resolve_user
from .volumes import Volumes, fill_from_image

log = logging.getLogger("dockyard.engine")

CONDITIONS = ("not-running", "next-exit", "removed")
RESTART_BACKOFF = 0.1
MAX_RESTART_BACKOFF = 60.0
LOG_POLL = 0.1


@dataclass
class Attachment:
    """An attach request waiting for the container to start (or already connected)."""

    stdin: bool
    stdout: bool
    stderr: bool
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class Live:
    """What the daemon holds in memory for one container."""

    record: Container
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: list[Attachment] = field(default_factory=list)
    exit_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    removed_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    monitor: asyncio.Task[None] | None = None
    health: asyncio.Task[None] | None = None


def _now() -> str:
    return now_text()


class Containers(ExecMixin, NetworkMixin, HealthMixin):
    def __init__(self, data_root: Path, images: ImageService, runc: Runc, networks: Networks, *, stop_timeout: int = 10) -> None:
        self.data_root = data_root
        self.images = images
        self.networks = networks
        self.volumes = Volumes(data_root / "volumes")
        self.runc = runc
        self.stop_timeout = stop_timeout
        self.records = ContainerStore(data_root / "containers")
        self.live: dict[str, Live] = {}
        self.execs: dict[str, Exec] = {}
        self._names_lock = asyncio.Lock()

    # -- lookup --------------------------------------------------------------------------------

    def get(self, ref: str) -> Live:
        """By full ID, name (with or without '/'), or unique ID prefix (Docker's order)."""
        if ref in self.live:
            return self.live[ref]
        name = ref.lstrip("/")
        for live in self.live.values():
            if live.record.name == name:
                return live
        if ref:
            matches = [live for cid, live in self.live.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(ref)

    def files(self, container: Container) -> ContainerFiles:
        return self.records.files(container.Id)

    def _save(self, container: Container) -> None:
        self.records.save(container)

    # -- recovery at start-up ------------------------------------------------------------------

    async def recover(self) -> None:
        """Load every container and find its true state (after a clean stop, a restart with
        containers still running under their shims, or a kill -9 of the daemon)."""
        known = set()
        for record in self.records.load_all():
            known.add(record.Id)
            live = Live(record)
            self.live[record.Id] = live
            if record.State.Running or record.State.Status in ("running", "paused", "restarting"):
                await self._readopt(live)
        await self.recover_networks()
        for entry in self.records.root.iterdir():
            if entry.is_dir() and entry.name not in known:
                # creation never finished (the record is written last): nothing refers to it
                await asyncio.to_thread(self._remove_dir, entry)
                await asyncio.to_thread(self.images.store.release, entry.name)
        for hold in await asyncio.to_thread(self.images.store.holds):
            if hold.holder not in known:
                await asyncio.to_thread(self.images.store.release, hold.holder)
        for live in list(self.live.values()):
            record = live.record
            if record.HostConfig.get("AutoRemove") and not record.State.Running:
                if record.State.Status == "exited":
                    await self.remove(record.Id, force=True, volumes=True)
                continue
            policy = (record.HostConfig.get("RestartPolicy") or {}).get("Name") or "no"
            if not record.State.Running and (
                (policy == "always") or (policy == "unless-stopped" and not record.manually_stopped)
                or record.State.Restarting
            ):
                with contextlib.suppress(EngineError):
                    await self.start(record.Id)

    async def _readopt(self, live: Live) -> None:
        record = live.record
        run_dir = Path(record.run_dir) if record.run_dir else None
        exited = shimclient.read_exit(run_dir) if run_dir else None
        if exited is None and run_dir is not None:
            try:
                await asyncio.wait_for(shimclient.request(run_dir, "state"), 5)
            except (OSError, asyncio.TimeoutError, ValueError):
                pass
            else:
                live.monitor = asyncio.ensure_future(self._monitor(live, run_dir))
                self._start_health(live)
                log.info("re-adopted running container %s", record.short_id)
                return
            exited = shimclient.read_exit(run_dir)
        if exited is None:
            # the shim died without recording an exit: the process may be orphaned; end it
            with contextlib.suppress(EngineError):
                await self.runc.kill(record.Id, signals.SIGKILL)
            await self.runc.delete(record.Id)
            exited = {"exit_code": 255, "finished_at": _now(), "error": "the container's shim died; exit status unknown"}
        await self._record_exit(live, exited)

    # -- create --------------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], name: str | None) -> tuple[str, list[str]]:
        image_ref = body.get("Image")
        if not image_ref or not isinstance(image_ref, str):
            raise InvalidParameter("no image specified: the config needs Image")
        host_config = dict(body.get("HostConfig") or {})
        # the networks themselves are looked up at start, as dockerd does
        network, attachments = attachments_for_create(host_config, body.get("NetworkingConfig"), self.networks)
        binds = [Bind.parse(text) for text in host_config.get("Binds") or []]  # checked, and kept normalised
        Limits.from_host_config(host_config)
        check_restart_policy(host_config)
        image = await self.images.resolve(image_ref)
        image_config = await asyncio.to_thread(self.images.store.config, image)
        config = merge_config(body, image_config.get("config") or {})
        config["Image"] = image_ref
        ports.port_bindings(host_config, config.get("ExposedPorts"))  # checked now, bound at start
        anonymous = {mount.destination: new_id() for mount in mounts_of(host_config, config, {}) if mount.anonymous}
        command = command_of(config)
        if not command:
            raise InvalidParameter("No command specified")
        async with self._names_lock:
            taken = {live.record.name for live in self.live.values()}
            if name:
                name = validate_name(name)
                if name in taken:
                    other = next(live for live in self.live.values() if live.record.name == name)
                    raise Conflict(
                        f'Conflict. The container name "/{name}" is already in use by container "{other.record.Id}". '
                        "You have to remove (or rename) that container to be able to reuse that name."
                    )
            else:
                name = random_name(taken)
            container_id = new_id()
            config.setdefault("Hostname", container_id[:12])
            if not config.get("Hostname"):
                config["Hostname"] = container_id[:12]
            record = Container(
                Id=container_id,
                Created=_now(),
                Path=command[0],
                Args=command[1:],
                Image=image.id,
                ImageRef=image.short_id if image_ref == image.manifest_digest else image_ref,
                Name=f"/{name}",
                Config=config,
                HostConfig={**HOST_CONFIG_DEFAULTS, **host_config, "NetworkMode": network, "Binds": [b.spec() for b in binds] or None},
                manifest_digest=image.manifest_digest,
                chain_ids=image.chain_ids,
                networks=attachments,
                anonymous_volumes=anonymous,
            )
            # reserve the name before the slow part, so two creates cannot both take it
            self.live[container_id] = Live(record)
        files = self.files(record)
        try:
            files.dir.mkdir(parents=True)
            for mount in self.mounts(record):
                if mount.type == "volume":
                    await asyncio.to_thread(self.volumes.create, mount.source, anonymous=mount.anonymous)
            try:
                await asyncio.to_thread(self.images.store.hold, container_id, image)
            except LookupError:
                raise NotFound(f"No such image: {image_ref}") from None
            await asyncio.to_thread(self.images.store.unpack, image)
            await asyncio.to_thread(rootfs.prepare_layers, files)
            self._write_etc_files(record, files)
            self._save(record)  # last: a record on disk means a complete container
        except BaseException:
            self.live.pop(container_id, None)
            await asyncio.to_thread(self._remove_dir, files.dir)
            await asyncio.to_thread(self.images.store.release, container_id)
            raise
        log.info("created container %s (%s) from %s", record.short_id, name, image_ref)
        return container_id, []

    def _write_etc_files(self, record: Container, files: ContainerFiles) -> None:
        hostname = record.Config.get("Hostname") or record.short_id
        network = record.HostConfig.get("NetworkMode")
        (files.dir / "hostname").write_text(hostname + "\n")
        (files.dir / "hosts").write_text(self.hosts_text(record))
        resolv = ""
        if network == "host":
            with contextlib.suppress(OSError):
                resolv = Path("/etc/resolv.conf").read_text()
        (files.dir / "resolv.conf").write_text(resolv)

    # -- start ---------------------------------------------------------------------------------

    async def start(self, ref: str, *, by_policy: bool = False) -> None:
        live = self.get(ref)
        async with live.lock:
            record = live.record
            if by_policy and not record.State.Restarting:
                return  # stopped or removed while the restart waited
            if record.State.Running:
                raise NotModified("container already started")
            if record.State.Status == "removing":
                raise Conflict(f"container {record.Id} is marked for removal and cannot be started")
            files = self.files(record)
            opened: list[Any] = []
            try:
                await self._mount(record, files)
                opened, forwards = await self._setup_network(record, files)
                spec = await asyncio.to_thread(self._runtime_spec, record, files)
                files.bundle.mkdir(exist_ok=True)
                (files.bundle / "config.json").write_text(json.dumps(spec.to_oci(), indent=1))
                record.runs += 1
                run_dir = files.run(record.runs)
                if run_dir.parent.is_dir():  # earlier runs' shims are gone: keep only this one
                    for old in run_dir.parent.iterdir():
                        shutil.rmtree(old, ignore_errors=True)
                record.run_dir = str(run_dir)
                await self.runc.delete(record.Id)  # a leftover of a run the daemon never saw end
                shim_spec = ShimSpec(
                    mode="create",
                    id=record.Id,
                    runc=self.runc.binary,
                    runc_root=str(self.runc.root),
                    bundle=str(files.bundle),
                    tty=record.tty,
                    stdin=bool(record.Config.get("OpenStdin")),
                    stdin_once=bool(record.Config.get("StdinOnce")),
                    log=str(files.log),
                    console_size=console_size(record.HostConfig.get("ConsoleSize")),
                    oom_files=[f"/sys/fs/cgroup/memory/dockyard/{record.Id}/memory.oom_control",
                               f"/sys/fs/cgroup/dockyard/{record.Id}/memory.events"],  # cgroup v1, v2
                    forwards=forwards,
                )  # fmt: skip
                record.shim_pid = await shimclient.spawn(run_dir, shim_spec, tuple(f.fd for f in forwards))
                for attachment in live.pending:
                    await self._connect(attachment, run_dir)
                live.pending.clear()
                starting = _now()  # before the process can run, so its exit is never recorded as earlier
                answer = await shimclient.request(run_dir, "start")
                if not answer.get("ok"):
                    raise RuntimeFailure(answer.get("error") or "runc start failed")
            except RuntimeFailure as error:
                failure: EngineError = RuntimeFailure(f"OCI runtime create failed: {error.message}")
            except EngineError as error:
                failure = error
            else:
                failure = None
            finally:
                ports.close_all(opened)  # the daemon's copies: the shim holds its own (or nobody does)
            if failure is None:
                record.manually_stopped = False
                record.State = ContainerState(
                    Status="running", Running=True, Pid=int(answer.get("pid") or 0), StartedAt=starting,
                    FinishedAt=record.State.FinishedAt,
                )  # fmt: skip
                self._start_health(live)
                self._save(record)
                await asyncio.to_thread(self.images.store.set_hold_running, record.Id, True)
                live.monitor = asyncio.ensure_future(self._monitor(live, run_dir))
                log.info("started container %s", record.short_id)
                return
            await self._start_failed(live, failure.message)
        # outside the lock: removal takes it
        if record.HostConfig.get("AutoRemove"):
            with contextlib.suppress(EngineError):
                await self.remove(record.Id, force=True, volumes=True)
        raise failure

    async def _start_failed(self, live: Live, message: str) -> None:
        record = live.record
        record.State = ContainerState(Status=record.State.Status if record.State.Status != "running" else "exited",
                             ExitCode=exit_code_for(message), Error=message,
                             StartedAt=record.State.StartedAt, FinishedAt=record.State.FinishedAt)  # fmt: skip
        self._save(record)
        for attachment in live.pending:
            if not attachment.connected.done():
                attachment.connected.set_result(None)
        live.pending.clear()
        for waiter in live.exit_waiters:
            if not waiter.done():
                waiter.set_result(record.State.ExitCode)
        live.exit_waiters.clear()
        await self._teardown_network(record)
        await asyncio.to_thread(self._unmount, record)

    async def _mount(self, record: Container, files: ContainerFiles) -> None:
        image_dirs = await asyncio.to_thread(self._snapshot_dirs, record)
        links = await asyncio.to_thread(rootfs.ensure_links, self.data_root, image_dirs[::-1])
        await asyncio.to_thread(rootfs.prepare_layers, files)
        await asyncio.to_thread(rootfs.mount, self.data_root, files, links)

    async def mount_rootfs(self, ref: str) -> Path:
        """Mount a container's root filesystem without running it (the builder copies into it)."""
        live = self.get(ref)
        async with live.lock:
            if live.record.State.Running:
                raise Conflict(f"container {live.record.Id} is running")
            files = self.files(live.record)
            await self._mount(live.record, files)
            return files.merged

    async def unmount_rootfs(self, ref: str) -> None:
        live = self.get(ref)
        async with live.lock:
            await asyncio.to_thread(self._unmount, live.record)

    def _snapshot_dirs(self, record: Container) -> list[tuple[str, Path]]:
        store = self.images.store
        image = store.resolve(record.manifest_digest)
        dirs = store.unpack(image)
        return list(zip(image.chain_ids, dirs))

    def _runtime_spec(self, record: Container, files: ContainerFiles) -> RuntimeSpec:
        config = record.Config
        user = resolve_user(files.merged, config.get("User") or "")
        env = list(config.get("Env") or [])
        keys = {entry.partition("=")[0] for entry in env}
        if "PATH" not in keys:
            env.insert(0, DEFAULT_PATH)
        env.append(f"HOSTNAME={config.get('Hostname') or record.short_id}")
        if record.tty and "TERM" not in keys:
            env.append("TERM=xterm")
        if "HOME" not in keys:
            env.append(f"HOME={user.home}")
        binds: list[Bind | Tmpfs] = []
        for mount in self.mounts(record):
            if mount.type == "tmpfs":
                binds.append(Tmpfs(mount.destination, mount.tmpfs_options))
                continue
            source = mount.source
            if mount.type == "volume":
                self.volumes.create(mount.source, anonymous=mount.anonymous)
                data = self.volumes.data(mount.source)
                if not mount.nocopy:
                    fill_from_image(data, rootfs.resolve_in_root(files.merged, mount.destination))
                source = str(data)
            elif mount.create_source:  # `-v` creates a missing host directory, as Docker's does
                Path(source).mkdir(parents=True, exist_ok=True)
            binds.append(Bind(source, mount.destination, mount.readonly))
        process = ProcessSpec(
            args=command_of(config),
            env=env,
            cwd=config.get("WorkingDir") or "/",
            uid=user.uid,
            gid=user.gid,
            additional_gids=user.additional_gids,
            tty=record.tty,
            console_size=console_size(record.HostConfig.get("ConsoleSize")),
        )
        return RuntimeSpec(
            process=process,
            rootfs=str(files.merged),
            hostname=config.get("Hostname") or record.short_id,
            readonly=bool(record.HostConfig.get("ReadonlyRootfs")),
            host_network=record.HostConfig.get("NetworkMode") == "host",
            netns_path=record.sandbox.netns if record.sandbox else None,
            etc_files={
                "/etc/resolv.conf": str(files.dir / "resolv.conf"),
                "/etc/hostname": str(files.dir / "hostname"),
                "/etc/hosts": str(files.dir / "hosts"),
            },
            binds=tuple(binds),
            limits=Limits.from_host_config(record.HostConfig),
            cgroups_path=f"/dockyard/{record.Id}",
        )

    # -- exits ---------------------------------------------------------------------------------

    async def _monitor(self, live: Live, run_dir: Path) -> None:
        """Wait for the shim to report the exit (reconnecting if the connection breaks)."""
        exited: dict[str, Any] | None = None
        while exited is None:
            try:
                exited = await shimclient.request(run_dir, "wait")
            except (OSError, ValueError):
                exited = shimclient.read_exit(run_dir)
                if exited is None:
                    await asyncio.sleep(0.2)
                    if not (run_dir / "shim.sock").exists():
                        exited = shimclient.read_exit(run_dir) or {
                            "exit_code": 255, "finished_at": _now(), "error": "the container's shim died; exit status unknown"
                        }  # fmt: skip
        await self._record_exit(live, exited)

    async def _record_exit(self, live: Live, exited: dict[str, Any]) -> None:
        record = live.record
        code = int(exited.get("exit_code", 255))
        self._stop_health(live)
        async with live.lock:  # a start right after `wait` returns waits for the clean-up
            record.State = ContainerState(
                Health=record.State.Health,
                Status="exited",
                ExitCode=code,
                Error=exited.get("error") or "",
                OOMKilled=bool(exited.get("oom_killed")),
                StartedAt=record.State.StartedAt,
                FinishedAt=exited.get("finished_at") or _now(),
            )
            record.shim_pid = 0
            self._save(record)
            await asyncio.to_thread(self.images.store.set_hold_running, record.Id, False)
            await self._teardown_network(record)
            await asyncio.to_thread(self._unmount, record)
        for waiter in live.exit_waiters:
            if not waiter.done():
                waiter.set_result(code)
        live.exit_waiters.clear()
        log.info("container %s exited with %d", record.short_id, code)
        if record.HostConfig.get("AutoRemove") and record.Id in self.live:
            with contextlib.suppress(EngineError):
                await self.remove(record.Id, force=True, volumes=True)
        elif should_restart(record) and record.Id in self.live:
            record.RestartCount += 1
            record.State.Restarting = True
            record.State.Status = "restarting"
            self._save(record)
            delay = min(RESTART_BACKOFF * 2 ** (record.RestartCount - 1), MAX_RESTART_BACKOFF)
            asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self._restart_by_policy(record.Id)))

    async def _restart_by_policy(self, container_id: str) -> None:
        live = self.live.get(container_id)
        if live is None or not live.record.State.Restarting:
            return  # removed or stopped meanwhile
        try:
            await self.start(container_id, by_policy=True)
        except EngineError as error:
            log.warning("restart of container %s failed: %s", container_id[:12], error.message)
            live.record.State.Restarting = False
            live.record.State.Status = "exited"
            self._save(live.record)

    def _unmount(self, record: Container) -> None:
        with contextlib.suppress(EngineError):
            rootfs.unmount(self.files(record).merged)

    # -- wait, stop, kill, restart -------------------------------------------------------------

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        """Resolves when the condition holds; the exit code."""
        if condition not in CONDITIONS:
            raise InvalidParameter(f"invalid condition: {condition!r}")
        live = self.get(ref)
        loop = asyncio.get_running_loop()
        if condition == "removed":
            future: asyncio.Future[int] = loop.create_future()
            live.removed_waiters.append(future)
            return await future
        if condition == "not-running" and not live.record.State.Running:
            return live.record.State.ExitCode
        future = loop.create_future()
        live.exit_waiters.append(future)
        return await future

    def waiter(self, ref: str, condition: str = "not-running") -> asyncio.Future[int]:
        """`wait` registered now (before a start the caller is about to make), resolved later."""
        if condition not in CONDITIONS:
            raise InvalidParameter(f"invalid condition: {condition!r}")
        live = self.get(ref)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if condition == "removed":
            live.removed_waiters.append(future)
        elif condition == "not-running" and not live.record.State.Running:
            future.set_result(live.record.State.ExitCode)
        else:
            live.exit_waiters.append(future)
        return future

    async def kill(self, ref: str, signal: str | int | None = None) -> None:
        live = self.get(ref)
        if not live.record.State.Running:
            raise Conflict(f"Container {live.record.Id} is not running")
        number = parse_signal(signal, signals.SIGKILL)
        if number in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            live.record.manually_stopped = True
            self._save(live.record)
        await self.runc.kill(live.record.Id, number)

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None, *, manual: bool = True) -> None:
        live = self.get(ref)
        record = live.record
        if record.State.Restarting and not record.State.Running:
            async with live.lock:  # a restart by policy may be starting it right now
                if not record.State.Running:
                    record.State.Restarting = False  # the pending restart is called off
                    record.State.Status = "exited"
                    record.manually_stopped = manual
                    self._save(record)
                    return
        if not record.State.Running:
            raise NotModified("container already stopped")
        if manual:
            record.manually_stopped = True
            self._save(record)
        if timeout is None:
            timeout = record.Config.get("StopTimeout")
            timeout = self.stop_timeout if timeout is None else int(timeout)
        stop_signal = parse_signal(signal or record.Config.get("StopSignal") or "SIGTERM", signals.SIGTERM)
        exited = asyncio.get_running_loop().create_future()
        live.exit_waiters.append(exited)
        if record.State.Paused:
            await self.runc.resume(record.Id)
        await self.runc.kill(record.Id, stop_signal)
        if timeout < 0:
            await exited
            return
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        except asyncio.TimeoutError:
            await self.runc.kill(record.Id, signals.SIGKILL)
            await exited

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        live = self.get(ref)
        if live.record.State.Running:
            await self.stop(ref, timeout)
        await self.start(live.record.Id)

    async def pause(self, ref: str) -> None:
        live = self.get(ref)
        if not live.record.State.Running:
            raise Conflict(f"Container {live.record.Id} is not running")
        if live.record.State.Paused:
            raise Conflict(f"Container {live.record.Id} is already paused")
        await self.runc.pause(live.record.Id)
        live.record.State.Paused = True
        live.record.State.Status = "paused"
        self._save(live.record)

    async def unpause(self, ref: str) -> None:
        live = self.get(ref)
        if not live.record.State.Paused:
            raise Conflict(f"Container {live.record.Id} is not paused")
        await self.runc.resume(live.record.Id)
        live.record.State.Paused = False
        live.record.State.Status = "running"
        self._save(live.record)

    # -- remove --------------------------------------------------------------------------------

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """`volumes`: also its anonymous volumes that no other container uses (`rm -v`)."""
        live = self.get(ref)
        record = live.record
        if record.State.Running:
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {record.Id}. Stop the container before attempting removal or force remove"
                )
            exited = asyncio.get_running_loop().create_future()
            live.exit_waiters.append(exited)
            if record.State.Paused:
                with contextlib.suppress(EngineError):
                    await self.runc.resume(record.Id)
            await self.runc.kill(record.Id, signals.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(exited, 30)
        if record.Id not in self.live:
            return  # removed meanwhile (auto-remove)
        async with live.lock:
            if record.Id not in self.live:
                return
            record.State.Status = "removing"
            del self.live[record.Id]
            for execution in [e for e in self.execs.values() if e.container_id == record.Id]:
                self.execs.pop(execution.id, None)
            await self._teardown_network(record)
            await asyncio.to_thread(self._unmount, record)
            await self.runc.delete(record.Id)
            await asyncio.to_thread(self._remove_dir, self.files(record).dir)
            await asyncio.to_thread(self.images.store.release, record.Id)
            if volumes:
                for name in record.anonymous_volumes.values():
                    if not self.volume_users(name):
                        with contextlib.suppress(EngineError):
                            await asyncio.to_thread(self.volumes.remove, name, [])
        for waiter in live.removed_waiters:
            if not waiter.done():
                waiter.set_result(record.State.ExitCode)
        for waiter in live.exit_waiters:
            if not waiter.done():
                waiter.set_result(record.State.ExitCode)
        log.info("removed container %s", record.short_id)

    def _remove_dir(self, directory: Path) -> None:
        merged = directory / "merged"
        if merged.exists():
            rootfs.unmount(merged)  # never delete through a mount
        shutil.rmtree(directory, ignore_errors=True)

    # -- attach and logs -----------------------------------------------------------------------

    async def attach(
        self, ref: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the container's shim (waiting for `start` if it has not started);
        None when the container is not running and will not be (exited)."""
        live = self.get(ref)
        attachment = Attachment(stdin, stdout, stderr)
        if live.record.State.Running and live.record.run_dir:
            await self._connect(attachment, Path(live.record.run_dir))
        elif live.record.State.Status == "created" or not live.record.State.Running:
            live.pending.append(attachment)
        return await attachment.connected

    async def _connect(self, attachment: Attachment, run_dir: Path) -> None:
        try:
            connection = await shimclient.attach(run_dir, stdin=attachment.stdin, stdout=attachment.stdout, stderr=attachment.stderr)
        except OSError:
            connection = None
        if not attachment.connected.done():
            attachment.connected.set_result(connection)

    async def logs(
        self, ref: str, *, stdout: bool, stderr: bool, follow: bool, tail: int | None, since: float = 0, until: float = 0
    ) -> AsyncIterator[tuple[int, bytes]]:
        live = self.get(ref)
        path = self.files(live.record).log
        records, offset = await asyncio.to_thread(read_records, path)
        since_ns, until_ns = int(since * 1e9), int(until * 1e9)
        for item in select(records, stdout=stdout, stderr=stderr, tail=tail, since_ns=since_ns, until_ns=until_ns):
            yield item.stream, item.data
        if not follow:
            return
        while True:
            running = live.record.State.Running and live.record.Id in self.live
            records, offset = await asyncio.to_thread(read_records, path, offset)
            for item in select(records, stdout=stdout, stderr=stderr, tail=None, since_ns=since_ns, until_ns=until_ns):
                yield item.stream, item.data
            if not running:
                return
            await asyncio.sleep(LOG_POLL)

    async def resize(self, ref: str, height: int, width: int) -> None:
        live = self.get(ref)
        if not live.record.State.Running:
            raise Conflict(f"Container {live.record.Id} is not running")
        answer = await shimclient.request(Path(live.record.run_dir), "resize", h=height, w=width)
        if not answer.get("ok"):
            raise RuntimeFailure(f"cannot resize the container's terminal: {answer.get('error')}")

    # -- listing and inspect -------------------------------------------------------------------

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None, limit: int = -1) -> list[Container]:
        filters = filters or {}
        chosen = []
        for live in sorted(self.live.values(), key=lambda one: one.record.Created, reverse=True):
            record = live.record
            if not all and not record.State.Running and not filters.get("status"):
                continue
            if not matches_filters(record, filters):
                continue
            chosen.append(record)
        return chosen[:limit] if limit and limit > 0 else chosen

    def inspect(self, ref: str) -> dict[str, Any]:
        record = self.get(ref).record
        files = self.files(record)
        document = record.model_dump(include={"Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount", "Driver", "Platform"})
        if document["State"].get("Health") is None:
            document["State"].pop("Health", None)  # shown only for a container with a health check, as Docker
        document.update(
            {
                "ResolvConfPath": str(files.dir / "resolv.conf"),
                "HostnamePath": str(files.dir / "hostname"),
                "HostsPath": str(files.dir / "hosts"),
                "LogPath": str(files.log),
                "MountLabel": "",
                "ProcessLabel": "",
                "AppArmorProfile": "",
                "ExecIDs": [e.id for e in self.execs.values() if e.container_id == record.Id and not e.probe] or None,
                "HostConfig": record.HostConfig,
                "GraphDriver": {
                    "Name": "overlay2",
                    "Data": {
                        "LowerDir": ":".join([str(files.init), *self._lower_dirs(record)]),
                        "UpperDir": str(files.upper),
                        "WorkDir": str(files.work),
                        "MergedDir": str(files.merged),
                    },
                },
                "Mounts": self.mount_points(record),
                "Config": record.Config,
                "NetworkSettings": network_settings(record, self.networks.networks),
            }
        )
        return document

    def mounts(self, record: Container) -> list[Mount]:
        return mounts_of(record.HostConfig, record.Config, record.anonymous_volumes)

    def mount_points(self, record: Container) -> list[dict[str, Any]]:
        return [mount.shown(str(self.volumes.data(mount.source)) if mount.type == "volume" else "") for mount in self.mounts(record)]

    def volume_users(self, name: str) -> list[str]:
        """IDs of the containers (running or not) that mount the volume `name`."""
        return [live.record.Id for live in self.live.values()
                if any(m.type == "volume" and m.source == name for m in self.mounts(live.record))]  # fmt: skip

    def _lower_dirs(self, record: Container) -> list[str]:
        snapshots = [self.images.store.snapshot(chain) for chain in reversed(record.chain_ids)]
        return [str(snapshot.fs) for snapshot in snapshots if snapshot is not None]
