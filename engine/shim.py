"""The shim: one small process per container process, between the daemon and runc.

`python -m engine.shim DIR` supervises one process that runc starts -- a container's init
(`mode: create`) or an exec (`mode: exec`) -- described by `DIR/shim.json` (a `ShimSpec`). It is
what containerd's shim is to dockerd: the container's parent, so that the daemon can die, be
killed with -9 or restart without the container noticing, and its output and exit status are
never lost.

Life of a shim:
1. Becomes a child subreaper (the container's init is reparented to it when runc exits), listens
   on `DIR/shim.sock`, and prepares the process: `runc create` (stdio pipes, or a pty received on
   a console socket). It then prints ONE JSON line on its stdout -- `{"ok": true}` or
   `{"ok": false, "error": "..."}` -- and closes it: that is the daemon's handshake.
2. Waits for `{"op": "start"}` on the socket, so that the daemon can attach clients first and no
   output is missed; then `runc start` (or `runc exec --detach`) and answers
   `{"ok": true, "pid": N}` or the error.
3. Relays: output (stdout, stderr; one stream with a TTY) goes to every attached client in Docker's
   multiplexed frames and, for a container, to its log file (`engine.logs`); stdin comes from
   attached clients.
4. When the process exits, writes `DIR/exit.json` atomically (exit code, finish time), answers
   every `wait`, drains and closes the clients, runs `runc delete` for a container, and exits.

Socket protocol: a client sends one JSON line and then, per `op`:
- `attach` {"stdin", "stdout", "stderr"}: frames from the shim; raw stdin bytes to it. The shim
  closes the connection after the process exited and its output is drained.
- `start`, `state`, `resize` {"h", "w"}, `wait`: one JSON line back.

The shim imports nothing of the daemon's and never touches the image store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .logs import LogWriter, frame
from .portproxy import Forward, Proxy

PR_SET_CHILD_SUBREAPER = 36
STDOUT, STDERR = 1, 2
READ_SIZE = 65536
START_TIMEOUT = 300.0


class ShimSpec(BaseModel):
    """What `DIR/shim.json` holds: written by the daemon, read by the shim."""

    mode: str
    """`create` (a container's init) or `exec` (a process in a running container)."""
    id: str
    """The runc container ID."""
    runc: str = "runc"
    runc_root: str
    bundle: str | None = None
    """create: the OCI bundle directory."""
    process: str | None = None
    """exec: the path of the OCI process JSON."""
    tty: bool = False
    stdin: bool = False
    """Whether the process gets a stdin that attached clients feed (else /dev/null)."""
    stdin_once: bool = False
    """Close the process's stdin when the first stdin-attached client ends its input."""
    log: str | None = None
    """Where output is kept (a container's log file); None keeps nothing (exec)."""
    console_size: tuple[int, int] | None = None
    """(height, width) of the pty before the process starts."""
    oom_files: list[str] = []
    """cgroup files whose `oom_kill N` says the kernel's OOM killer ended the process."""
    forwards: list[Forward] = []
    """Published ports: listening sockets inherited from the daemon, served while the process runs."""


@contextlib.contextmanager
def short_path(directory: Path, name: str) -> Iterator[str]:
    """A path to `directory/name` short enough for AF_UNIX (`/proc/self/fd/N/name`), valid
    for this process while the context lasts; container directories are deeper than 108 bytes."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"


def atomic_json(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "w") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    os.rename(temp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exit_status(status: int) -> int:
    """A wait status as Docker reports it: the exit code, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 255


def runc_error(log_path: Path, fallback: str) -> str:
    """The last error runc wrote to its JSON log, else `fallback`."""
    message = ""
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal") and entry.get("msg"):
                    message = entry["msg"]
    return message or fallback.strip() or "runc failed"


@dataclass
class Client:
    writer: asyncio.StreamWriter
    stdout: bool
    stderr: bool

    def wants(self, stream: int) -> bool:
        return self.stdout if stream == STDOUT else self.stderr


@dataclass
class Shim:
    spec: ShimSpec
    dir: Path
    clients: list[Client] = field(default_factory=list)
    waiters: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    exit: dict[str, Any] | None = None
    pid: int | None = None
    master: int | None = None
    stdin_fd: int | None = None
    outputs: list[tuple[int, int]] = field(default_factory=list)
    """(fd, stream) pairs to relay."""
    log: LogWriter | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the process exited and its output is drained, or it could not be started."""
    stdin_closed: bool = False
    proxy: Proxy | None = None

    @property
    def runc_log(self) -> Path:
        return self.dir / "runc.log"

    def runc(self, *args: str) -> list[str]:
        return [self.spec.runc, "--root", self.spec.runc_root, "--log", str(self.runc_log), "--log-format", "json", *args]

    # -- 1. prepare ----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Make the process's stdio; for a container, `runc create` it."""
        if self.spec.log:
            self.log = LogWriter(Path(self.spec.log))
        if self.spec.mode == "create":
            await self._runc_with_stdio(self.runc("create", "--bundle", str(self.spec.bundle), "--pid-file", str(self.dir / "pid"), self.spec.id))

    async def _runc_with_stdio(self, command: list[str]) -> None:
        """Run a detaching runc command with the process's stdio (pipes, or a console socket)."""
        if self.spec.tty:
            # runc connects to this path itself, so it must be short (AF_UNIX paths are < 108 bytes)
            console_dir = tempfile.mkdtemp(prefix="dockyard-console-", dir="/run" if os.access("/run", os.W_OK) else None)
            console = Path(console_dir) / "c.sock"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(console))
            listener.listen(1)
            listener.setblocking(False)
            command = [*command[:-1], "--console-socket", str(console), command[-1]]
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            loop = asyncio.get_running_loop()
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            done = asyncio.ensure_future(process.communicate())
            await asyncio.wait({accept, done}, return_when=asyncio.FIRST_COMPLETED)
            if accept.done():
                connection, _ = accept.result()
                with connection:
                    connection.setblocking(True)
                    _, fds, _, _ = socket.recv_fds(connection, 1024, 1)
                self.master = fds[0]
            else:
                accept.cancel()
            _, err = await done
            listener.close()
            shutil.rmtree(console_dir, ignore_errors=True)
            if process.returncode != 0:
                if self.master is not None:
                    os.close(self.master)
                    self.master = None
                raise RuntimeError(runc_error(self.runc_log, err.decode(errors="replace")))
            assert self.master is not None
            if self.spec.console_size:
                self.resize(*self.spec.console_size)
            os.set_blocking(self.master, False)
            self.outputs = [(self.master, STDOUT)]
            self.stdin_fd = self.master if self.spec.stdin else None
            return
        stdin_read = stdin_write = None
        if self.spec.stdin:
            stdin_read, stdin_write = os.pipe()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=stdin_read if stdin_read is not None else devnull, stdout=out_write, stderr=err_write
            )
            await process.wait()
        finally:
            for fd in (stdin_read, out_write, err_write, devnull):
                if fd is not None:
                    os.close(fd)
        if process.returncode != 0:
            # runc wrote its error to the process's stderr too: it belongs in the message, not the log
            for fd in (out_read, err_read, stdin_write):
                if fd is not None:
                    os.close(fd)
            raise RuntimeError(runc_error(self.runc_log, ""))
        for fd in (out_read, err_read):
            os.set_blocking(fd, False)
        self.outputs = [(out_read, STDOUT), (err_read, STDERR)]
        self.stdin_fd = stdin_write

    # -- 2. start ------------------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        async with self.start_lock:
            if self.started.is_set():
                return {"ok": True, "pid": self.pid}
            try:
                if self.spec.mode == "create":
                    process = await asyncio.create_subprocess_exec(
                        *self.runc("start", self.spec.id),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.PIPE,
                    )
                    _, err = await process.communicate()
                    if process.returncode != 0:
                        raise RuntimeError(runc_error(self.runc_log, err.decode(errors="replace")))
                else:
                    await self._runc_with_stdio(
                        self.runc("exec", "--detach", "--pid-file", str(self.dir / "pid"), "--process", str(self.spec.process), self.spec.id)
                    )
                self.pid = int((self.dir / "pid").read_text().strip())
            except (RuntimeError, OSError, ValueError) as error:
                self.finished.set()  # nothing runs: the shim's work is over
                return {"ok": False, "error": str(error)}
            self.started.set()
            if self.spec.forwards:
                self.proxy = Proxy(self.spec.forwards)
                await self.proxy.start()
            asyncio.ensure_future(self.supervise())
            return {"ok": True, "pid": self.pid}

    # -- 3. relay ------------------------------------------------------------------------------

    async def supervise(self) -> None:
        loop = asyncio.get_running_loop()
        relays = [asyncio.ensure_future(self._relay(fd, stream)) for fd, stream in self.outputs]
        assert self.pid is not None
        status = await loop.run_in_executor(None, _wait_pid, self.pid)
        code = exit_status(status)
        if self.proxy is not None:
            self.proxy.close()  # the ports are free before anyone hears of the exit
        # the output may still hold what the process wrote last: drain it, a bounded while
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*relays), timeout=5)
        for relay in relays:
            relay.cancel()
        self.exit = {"exit_code": code, "finished_at": now_text(), "pid": self.pid, "oom_killed": self._oom_killed()}
        atomic_json(self.dir / "exit.json", self.exit)
        if self.log is not None:
            self.log.close()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(self.exit)
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.writer.drain()
                client.writer.close()
        self.drained.set()
        self.finished.set()

    async def _relay(self, fd: int, stream: int) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the pty's last user is gone
                    return
                if not data:
                    return
                self.emit(stream, data)
        finally:
            loop.remove_reader(fd)

    def _oom_killed(self) -> bool:
        for path in self.spec.oom_files:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(path).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def emit(self, stream: int, data: bytes) -> None:
        if self.log is not None:
            self.log.write(stream, data)
        chunk = frame(stream, data)
        for client in list(self.clients):
            if client.wants(stream):
                try:
                    client.writer.write(chunk)
                except Exception:
                    self.clients.remove(client)

    def resize(self, height: int, width: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        if self.stdin_fd is not None and not self.stdin_closed:
            self.stdin_closed = True
            if self.stdin_fd != self.master:  # a pty has no half-close: its input just ends
                with contextlib.suppress(OSError):
                    os.close(self.stdin_fd)

    # -- the socket ----------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            op = request.get("op")
            if op == "start":
                await self._answer(writer, await self.start())
            elif op == "wait":
                if self.exit is None:
                    waiter = asyncio.get_running_loop().create_future()
                    self.waiters.append(waiter)
                    await self._answer(writer, await waiter)
                else:
                    await self._answer(writer, self.exit)
            elif op == "state":
                await self._answer(writer, {"pid": self.pid, "started": self.started.is_set(), "exit": self.exit})
            elif op == "resize":
                try:
                    self.resize(int(request["h"]), int(request["w"]))
                    await self._answer(writer, {"ok": True})
                except (OSError, KeyError, ValueError) as error:
                    await self._answer(writer, {"ok": False, "error": str(error)})
            elif op == "attach":
                await self._attach(request, reader, writer)
            else:
                await self._answer(writer, {"ok": False, "error": f"unknown op {op!r}"})
        except (ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()

    async def _attach(self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.exit is not None:
            return
        client = Client(writer, bool(request.get("stdout")), bool(request.get("stderr")))
        self.clients.append(client)
        if request.get("stdin"):
            await self.started.wait()  # an exec's stdin exists only once runc exec ran
        if request.get("stdin") and self.stdin_fd is not None:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    if self.spec.stdin_once:
                        self.close_stdin()
                    break
                if self.stdin_closed:
                    continue
                try:
                    await asyncio.get_running_loop().run_in_executor(None, _write_all, self.stdin_fd, data)
                except OSError:
                    break
        await self.drained.wait()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [])
            continue
        view = view[written:]


def _wait_pid(pid: int) -> int:
    """The wait status of `pid`, reparented to us (we are its subreaper) once runc exited."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            # not (yet) our child: runc's intermediate process is still exiting
            if not _alive(pid):
                return 255 << 8
            time.sleep(0.01)
        except InterruptedError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def run(directory: Path) -> int:
    spec = ShimSpec.model_validate_json((directory / "shim.json").read_bytes())
    shim = Shim(spec, directory)
    sock_path = directory / "shim.sock"
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
    with short_path(directory, "shim.sock") as path:
        server = await asyncio.start_unix_server(shim.serve, path=path)
    handshake = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        await shim.prepare()
    except (RuntimeError, OSError) as error:
        handshake.write(json.dumps({"ok": False, "error": str(error)}) + "\n")
        handshake.close()
        server.close()
        sock_path.unlink(missing_ok=True)
        return 1
    handshake.write(json.dumps({"ok": True}) + "\n")
    handshake.close()
    # a daemon that died between spawning us and `start` must not leave us waiting forever
    started = asyncio.ensure_future(shim.started.wait())
    finished = asyncio.ensure_future(shim.finished.wait())
    await asyncio.wait({started, finished}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        shim.finished.set()
    await shim.finished.wait()
    server.close()
    if spec.mode == "create":
        process = await asyncio.create_subprocess_exec(
            *shim.runc("delete", "--force", spec.id), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await process.wait()
    sock_path.unlink(missing_ok=True)
    return 0


def main() -> int:
    directory = Path(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # the daemon's signals (a ^C in its terminal, SIGTERM to its group) are not ours
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return asyncio.run(run(directory))


if __name__ == "__main__":
    sys.exit(main())
