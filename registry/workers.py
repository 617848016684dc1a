"""Several worker processes serving one port: a pre-fork supervisor.

The registry keeps no state in a process that another process could miss (content in the
storage backend, the Hub in the metadata database), so N processes can serve one port and use
every core where one event loop uses one. The supervisor binds one listening socket per worker
on the same port (SO_REUSEPORT: the kernel spreads new connections over the sockets by their
addresses), runs the start-up checks once (schema migration, JSON-era records), forks
`http.workers` workers that each serve one of the inherited sockets, and then only watches.
One socket per worker rather than one shared socket, because a shared one goes to whichever
event loop wakes first, and asyncio accepts every pending connection at once: the few
long-lived connections of a `docker push` all landed on one worker while the others idled.
The supervisor keeps every socket open, so connections that arrive for a worker being
replaced wait in its socket's queue for the next one. (Without SO_REUSEPORT, all workers share
one socket.) The supervisor only watches: a worker that dies is replaced (one that cannot even start stops the whole
registry), and SIGTERM or SIGINT is passed to every worker, each of which drains its in-flight
requests (`http.shutdown_timeout`) before the supervisor exits. Workers die with the
supervisor (PR_SET_PDEATHSIG), so a kill -9 of it leaves no worker serving.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from .config import ConfigError, Settings

log = logging.getLogger("dockyard.registry")

PR_SET_PDEATHSIG = 1
QUICK_DEATH = 2.0
"""Seconds: a worker that exits sooner than this after its start did not manage to start."""
MAX_QUICK_DEATHS = 5
STARTUP_FAILURE = 3
"""Exit status of a worker whose start-up failed (as opposed to a crash while serving)."""


def bind(settings: Settings, count: int = 1) -> list[socket.socket]:
    """`count` listening sockets on `http.listen` (one per worker), or one if the system
    cannot share a port between sockets."""
    host, port = settings.http.host, settings.http.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shared = count > 1 and hasattr(socket, "SO_REUSEPORT")
    listeners: list[socket.socket] = []
    try:
        for _ in range(count if shared else 1):
            listener = socket.socket(family, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            port = listener.getsockname()[1]  # port 0: the others take the one the first was given
            listener.listen(1024)
            listener.set_inheritable(True)
    except OSError as error:
        for listener in listeners:
            listener.close()
        raise ConfigError(f"cannot listen on {settings.http.listen}: {error.strerror}") from None
    return listeners


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed supervisor
        pass


class Supervisor:
    def __init__(self, settings: Settings, count: int, serve_worker: Callable[[Settings, socket.socket], None], prepare: Callable[[Settings], None]) -> None:
        self.settings = settings
        self.count = count
        self.serve_worker = serve_worker
        self.prepare = prepare
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (its socket's index, when it was started)
        self.stopping = False
        self.quick_deaths = 0
        self.listeners: list[socket.socket] = []

    def run(self, listeners: list[socket.socket]) -> int:
        """Serve with `self.count` workers, worker i on `listeners[i]` (all on the one
        listener when there is one)."""
        self.listeners = listeners
        try:
            status = self._prepared()
            if status:
                return status
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._stop)
            # Every object so far (the imported registry) into the permanent generation: the
            # workers' collections then never write to the pages they share with this process
            # (a 32-connection storm un-shared 44 MiB of them across two workers; with this, 4).
            gc.freeze()
            for slot in range(self.count):
                self._spawn(slot)
            log.info("dockyard registry on %s: %d worker processes (%s), %d listening sockets", self.settings.http.listen, self.count,
                     ", ".join(map(str, self.workers)), len(listeners))  # fmt: skip
            return self._watch()
        finally:
            for listener in listeners:
                listener.close()

    def _prepared(self) -> int:
        """Run the start-up work every worker would otherwise race to do (the schema migration,
        the check for JSON-era records) once, in a child process, so the supervisor itself
        never starts an event loop or a thread before it forks."""
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                self.prepare(self.settings)
            except ConfigError as error:
                print(f"dockyard-registry: {error}", file=sys.stderr)
                status = 2
            except BaseException:
                log.exception("start-up failed")
                status = 1
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _spawn(self, slot: int) -> None:
        supervisor = os.getpid()
        listener = self.listeners[slot % len(self.listeners)]
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                for other in self.listeners:
                    if other is not listener:
                        other.close()  # another worker's: only the supervisor keeps it open
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _die_with_parent()
                if os.getppid() != supervisor:  # it died before the line above (not `== 1`: in a container the supervisor is PID 1)
                    os._exit(1)
                self.serve_worker(self.settings, listener)
            except ConfigError as error:
                print(f"dockyard-registry worker {os.getpid()}: {error}", file=sys.stderr)
                status = STARTUP_FAILURE
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                status = 1
            finally:
                os._exit(status)
        self.workers[pid] = (slot, time.monotonic())

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping: %d workers drain their requests", len(self.workers))
        self.stopping = True
        for pid in self.workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _watch(self) -> int:
        exit_status = 0
        while self.workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            slot, started = worker
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    log.warning("worker %d ended with %d while stopping", pid, code)
                    exit_status = 1
                continue
            if code == STARTUP_FAILURE or time.monotonic() - started < QUICK_DEATH:
                self.quick_deaths += 1
            if code == STARTUP_FAILURE or self.quick_deaths > MAX_QUICK_DEATHS:
                log.error("worker %d could not start (status %d); stopping the registry", pid, code)
                self._stop(signal.SIGTERM, None)
                exit_status = 2
                continue
            log.warning("worker %d ended with status %d; starting another", pid, code)
            self._spawn(slot)
        return exit_status


def worker_count(settings: Settings) -> int:
    return settings.http.workers or os.cpu_count() or 1
