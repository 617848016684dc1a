"""Several worker processes serving one port: a pre-fork supervisor that hands each
connection to the least busy worker.

The registry keeps no state in a process that another process could miss (content in the
storage backend, the Hub in the metadata database), so N processes can serve one port and use
every core where one event loop uses one. `registry.server` binds the port, runs the start-up
checks once (schema migration, JSON-era records), forks `http.workers` workers from the fully
imported registry (so they share its pages), each joined to the supervisor by a Unix socket
pair, and then hands over to `Supervisor`: the process replaces its own image (execve, same
PID) with a fresh interpreter that imports only this module. Why: after the fork the
supervisor needs none of the registry, yet its copy of every page the workers have written to
since was its alone, a quarter of the server's memory; the lean image holds a few MiB. The
supervisor then accepts every connection itself and passes it (SCM_RIGHTS) to the worker with
the fewest open connections; a worker tells it, one byte each, when a connection of its own
closes. Why not let the kernel choose: with one listening socket shared by the workers,
whichever event loop woke first ran asyncio's accept loop and took every pending connection,
so the four kept-alive connections of a `docker push` all went to one worker while the others
idled; with one SO_REUSEPORT socket per worker the kernel's hash of the addresses put four
connections 4-0 on two workers one time in eight, and 3-1 half the time. Counting is exact:
four connections are always 2-2.

A worker that dies is replaced by a fresh interpreter (`registry.server.serve_replacement`)
that reads the settings the supervisor was started with from a memory file, so it serves
exactly as its predecessor did (including a token key generated for this run); it imports the
registry for itself, so it shares no pages with its siblings. One that cannot even start stops
the whole registry. The connections a dead worker held are lost with it, as they would be with
any server process. SIGTERM or SIGINT makes the supervisor stop accepting and pass the signal
to every worker, each of which drains its in-flight requests (`http.shutdown_timeout`) before
the supervisor exits. Workers die with the supervisor (PR_SET_PDEATHSIG), so a kill -9 of it
leaves no worker serving.

This module imports nothing of the registry but its log set-up: it is all the lean image has.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from .logs import configure_logging

if TYPE_CHECKING:  # (the lean image imports no more than it runs: not typing's, dataclasses' or subprocess' modules)
    from collections.abc import Callable
    from typing import NoReturn

log = logging.getLogger("dockyard.registry")

PR_SET_PDEATHSIG = 1
QUICK_DEATH = 2.0
"""Seconds: a worker that exits sooner than this after its start did not manage to start."""
MAX_QUICK_DEATHS = 5
STARTUP_FAILURE = 3
"""Exit status of a worker whose start-up failed (as opposed to a crash while serving)."""
CLOSED = b"."
"""What a worker sends the supervisor for each of its connections that closed."""
ACCEPTS_PER_WAKE = 64
STATE_VARIABLE = "DOCKYARD_SUPERVISOR_STATE"
"""The environment variable that carries the supervisor's state across its execve."""
CHANNEL_VARIABLE = "DOCKYARD_WORKER_CHANNEL_FD"
SETTINGS_VARIABLE = "DOCKYARD_WORKER_SETTINGS_FD"
"""What a replacement worker is started with: its end of the socket pair, and the memory file
holding the settings (see `registry.server.serve_replacement`)."""
HELD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
"""Blocked across the execve (the mask survives it): one that arrives before the lean image
has its handlers waits for them instead of killing the supervisor."""


class Worker:
    __slots__ = ("pid", "started", "channel", "connections")

    def __init__(self, pid: int, started: float, channel: socket.socket) -> None:
        self.pid = pid
        self.started = started
        self.channel = channel
        """The supervisor's end of the socket pair: connections go out, CLOSED bytes come back."""
        self.connections = 0


def _die_with_parent() -> None:
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed supervisor
        pass


def _become_worker(supervisor: int) -> None:
    """In a child just forked: the default signal handling, and death with the supervisor."""
    signal.set_wakeup_fd(-1)
    for signum in HELD_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
    _die_with_parent()
    if os.getppid() != supervisor:  # it died before the line above (not `== 1`: in a container the supervisor is PID 1)
        os._exit(1)


def fork_worker(serve: Callable[[socket.socket], int], inherited: list[socket.socket]) -> Worker:
    """Fork a worker that runs `serve(its end of the socket pair)` and exits with what it
    returns; `inherited` are the sockets of this process that the worker must not keep."""
    supervisor = os.getpid()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            _become_worker(supervisor)
            for sock in [ours, *inherited]:
                sock.close()
            status = serve(theirs)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            os._exit(status)
    theirs.close()
    ours.setblocking(False)
    return Worker(pid, time.monotonic(), ours)


def python_command(call: str, *, site: bool = True) -> list[str]:
    """The command line of this interpreter (with its -X/-O/... flags) running `call`;
    without `site`, with -S (no site-packages and no .pth hooks: 1 MiB less for a process that
    needs only the standard library and this tree)."""
    import subprocess

    return [sys.executable, *subprocess._args_from_interpreter_flags(), *([] if site else ["-S"]), "-c", call]  # type: ignore[attr-defined]


def module_environment(**extra: str) -> dict[str, str]:
    """This process's environment, with the directory `registry` was imported from first on
    the module path so a new image finds the same code."""
    tree = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    paths = [tree, *(path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path and path != tree)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


REPLACEMENT = "from registry.server import serve_replacement; serve_replacement()"


class Supervisor:
    """Accepts connections for `workers` and hands them over; replaces dead workers with
    fresh interpreters that read their settings from `settings_fd`."""

    def __init__(self, listener: socket.socket, workers: list[Worker], count: int, settings_fd: int, listen: str,
                 replacement: list[str]) -> None:  # fmt: skip
        self.listener: socket.socket | None = listener
        self.replacement = replacement
        """The command line of a replacement worker."""
        self.workers = {worker.pid: worker for worker in workers}
        self.count = count
        self.settings_fd = settings_fd
        self.listen = listen
        self.stopping = False
        self.quick_deaths = 0
        self.exit_status = 0
        self.selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()

    def run(self) -> int:
        listener = self.listener
        assert listener is not None
        try:
            for sock in (listener, self._wake_read, self._wake_write):
                sock.setblocking(False)
            signal.set_wakeup_fd(self._wake_write.fileno())  # a signal wakes the select below
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._stop)
            signal.signal(signal.SIGCHLD, lambda *_: None)  # (a handler, so SIGCHLD is delivered and wakes it)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
            log.info("dockyard registry on %s: %d worker processes (%s)", self.listen, self.count, ", ".join(map(str, self.workers)))
            self.selector.register(listener, selectors.EVENT_READ, self._accept)
            self.selector.register(self._wake_read, selectors.EVENT_READ, self._woken)
            for worker in self.workers.values():
                self.selector.register(worker.channel, selectors.EVENT_READ, self._closed)
            self._reap()  # any worker that died while this image was being loaded
            while self.workers:
                ready = self.selector.select(timeout=1.0)
                for key, _ in sorted(ready, key=lambda event: event[0].data == self._accept):  # counts first, then accepts
                    key.data(key.fileobj)
                self._reap()
            return self.exit_status
        finally:
            self._close_listener()
            signal.set_wakeup_fd(-1)

    def _spawn(self) -> None:
        """A replacement worker: a fresh interpreter running `registry.server.serve_replacement`."""
        supervisor = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = self.replacement
        environment = module_environment(**{CHANNEL_VARIABLE: str(theirs.fileno()), SETTINGS_VARIABLE: str(self.settings_fd)})
        pid = os.fork()
        if pid == 0:  # every other descriptor of the supervisor is close-on-exec
            try:
                _become_worker(supervisor)
                os.set_inheritable(theirs.fileno(), True)
                os.set_inheritable(self.settings_fd, True)
                os.execve(command[0], command, environment)
            except BaseException as error:
                print(f"dockyard-registry: cannot start a worker: {error}", file=sys.stderr)
            finally:
                os._exit(STARTUP_FAILURE)
        theirs.close()
        ours.setblocking(False)
        self.workers[pid] = Worker(pid, time.monotonic(), ours)
        self.selector.register(ours, selectors.EVENT_READ, self._closed)

    def _accept(self, listener: object) -> None:
        assert self.listener is not None
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. EMFILE: leave it queued, try at the next wake-up
                log.warning("cannot accept a connection: %s", error)
                return
            with connection:
                for worker in sorted(self.workers.values(), key=lambda worker: worker.connections):
                    try:
                        socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
                    except OSError:
                        continue  # a worker that is going away: the next one
                    worker.connections += 1
                    break

    def _closed(self, channel: object) -> None:
        worker = next((worker for worker in self.workers.values() if worker.channel is channel), None)
        try:
            data = worker.channel.recv(4096) if worker is not None else b""
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if worker is None or not data:  # the worker went away: its death is reaped below
            self.selector.unregister(channel)  # type: ignore[arg-type]
            return
        worker.connections = max(0, worker.connections - data.count(CLOSED))

    def _woken(self, wake: object) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._wake_read.recv(4096)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping: %d workers drain their requests", len(self.workers))
        self.stopping = True
        self._close_listener()  # no new connections; the workers finish theirs
        for pid in self.workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _close_listener(self) -> None:
        if self.listener is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.channel)
            worker.channel.close()
            self._ended(worker, os.waitstatus_to_exitcode(status))

    def _ended(self, worker: Worker, code: int) -> None:
        if self.stopping:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                log.warning("worker %d ended with %d while stopping", worker.pid, code)
                self.exit_status = 1
            return
        if code == STARTUP_FAILURE or time.monotonic() - worker.started < QUICK_DEATH:
            self.quick_deaths += 1
        if code == STARTUP_FAILURE or self.quick_deaths > MAX_QUICK_DEATHS:
            log.error("worker %d could not start (status %d); stopping the registry", worker.pid, code)
            self._stop(signal.SIGTERM, None)
            self.exit_status = 2
            return
        log.warning("worker %d ended with status %d; starting another", worker.pid, code)
        self._spawn()


class Handover:
    """What the supervisor's lean image needs of the process that forked the workers:
    `settings` are the settings and any generated token key, as
    `registry.server.serve_replacement` reads them."""

    def __init__(self, listener: socket.socket, workers: list[Worker], count: int, settings: bytes, listen: str, log_level: str,
                 log_format: str) -> None:  # fmt: skip
        self.listener, self.workers, self.count, self.settings = listener, workers, count, settings
        self.listen, self.log_level, self.log_format = listen, log_level, log_format


def supervise(handover: Handover) -> int:
    """Run the supervisor in a lean image of this process (execve; returns only if that
    fails, after supervising from this image instead)."""
    settings_fd = os.memfd_create("dockyard-settings", os.MFD_CLOEXEC)
    os.write(settings_fd, handover.settings)  # (a few KiB: one write)
    descriptors = [handover.listener.fileno(), settings_fd, *(worker.channel.fileno() for worker in handover.workers)]
    state = {
        "listener": handover.listener.fileno(),
        "family": handover.listener.family,
        "settings": settings_fd,
        "count": handover.count,
        "listen": handover.listen,
        "log": [handover.log_level, handover.log_format],
        "replacement": python_command(REPLACEMENT),
        "workers": [[worker.pid, worker.started, worker.channel.fileno()] for worker in handover.workers],
    }
    command = python_command("from registry.workers import resume; resume()", site=False)
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        for fd in descriptors:
            os.set_inheritable(fd, True)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, module_environment(**{STATE_VARIABLE: json.dumps(state)}))
    except OSError as error:
        log.warning("cannot replace the supervisor's image (%s); it keeps the registry's", error)
        for fd in descriptors:
            os.set_inheritable(fd, False)
    return Supervisor(handover.listener, handover.workers, handover.count, settings_fd, handover.listen, python_command(REPLACEMENT)).run()


def resume() -> NoReturn:
    """The lean image's entry point: the supervisor, from the state `supervise` left."""
    state = json.loads(os.environ.pop(STATE_VARIABLE))
    configure_logging(*state["log"])
    for fd in [state["listener"], state["settings"], *(fd for _, _, fd in state["workers"])]:
        os.set_inheritable(fd, False)
    listener = socket.socket(state["family"], socket.SOCK_STREAM, fileno=state["listener"])
    workers = [Worker(pid, started, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)) for pid, started, fd in state["workers"]]
    for worker in workers:
        worker.channel.setblocking(False)
    sys.exit(Supervisor(listener, workers, state["count"], state["settings"], state["listen"], state["replacement"]).run())
