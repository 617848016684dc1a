"""Several worker processes serving one port: a pre-fork supervisor that hands each
connection to the least busy worker.

The registry keeps no state in a process that another process could miss (content in the
storage backend, the Hub in the metadata database), so N processes can serve one port and use
every core where one event loop uses one. The supervisor binds the port, runs the start-up
checks once (schema migration, JSON-era records), forks `http.workers` workers, each joined to
it by a Unix socket pair, and then accepts every connection itself and passes it (SCM_RIGHTS)
to the worker with the fewest open connections; a worker tells it, one byte each, when a
connection of its own closes. Why not let the kernel choose: with one listening socket shared
by the workers, whichever event loop woke first ran asyncio's accept loop and took every
pending connection, so the four kept-alive connections of a `docker push` all went to one
worker while the others idled; with one SO_REUSEPORT socket per worker the kernel's hash of
the addresses put four connections 4-0 on two workers one time in eight, and 3-1 half the
time. Counting is exact: four connections are always 2-2.

A worker that dies is replaced (one that cannot even start stops the whole registry); the
connections it held are lost with it, as they would be with any server process. SIGTERM or
SIGINT makes the supervisor stop accepting and pass the signal to every worker, each of which
drains its in-flight requests (`http.shutdown_timeout`) before the supervisor exits. Workers
die with the supervisor (PR_SET_PDEATHSIG), so a kill -9 of it leaves no worker serving.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from .config import ConfigError, Settings

log = logging.getLogger("dockyard.registry")

PR_SET_PDEATHSIG = 1
QUICK_DEATH = 2.0
"""Seconds: a worker that exits sooner than this after its start did not manage to start."""
MAX_QUICK_DEATHS = 5
STARTUP_FAILURE = 3
"""Exit status of a worker whose start-up failed (as opposed to a crash while serving)."""


def bind(settings: Settings) -> socket.socket:
    host, port = settings.http.host, settings.http.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ConfigError(f"cannot listen on {settings.http.listen}: {error.strerror}") from None
    listener.listen(1024)
    return listener


CLOSED = b"."
"""What a worker sends the supervisor for each of its connections that closed."""
ACCEPTS_PER_WAKE = 64


@dataclass
class Worker:
    pid: int
    started: float
    channel: socket.socket
    """The supervisor's end of the socket pair: connections go out, CLOSED bytes come back."""
    connections: int = 0


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
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.quick_deaths = 0
        self.exit_status = 0
        self.listener: socket.socket | None = None
        self.selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()

    def run(self, listener: socket.socket) -> int:
        self.listener = listener
        try:
            status = self._prepared()
            if status:
                return status
            for sock in (listener, self._wake_read, self._wake_write):
                sock.setblocking(False)
            signal.set_wakeup_fd(self._wake_write.fileno())  # a signal wakes the select below
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._stop)
            signal.signal(signal.SIGCHLD, lambda *_: None)  # (a handler, so SIGCHLD is delivered and wakes it)
            # Every object so far (the imported registry) into the permanent generation: the
            # workers' collections then never write to the pages they share with this process
            # (a 32-connection storm un-shared 44 MiB of them across two workers; with this, 4).
            gc.freeze()
            for _ in range(self.count):
                self._spawn()
            log.info("dockyard registry on %s: %d worker processes (%s)", self.settings.http.listen, self.count,
                     ", ".join(map(str, self.workers)))  # fmt: skip
            self.selector.register(listener, selectors.EVENT_READ, self._accept)
            self.selector.register(self._wake_read, selectors.EVENT_READ, self._woken)
            while self.workers:
                ready = self.selector.select(timeout=1.0)
                for key, _ in sorted(ready, key=lambda event: event[0].data == self._accept):  # counts first, then accepts
                    key.data(key.fileobj)
                self._reap()
            return self.exit_status
        finally:
            self._close_listener()
            signal.set_wakeup_fd(-1)

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

    def _spawn(self) -> None:
        supervisor = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                _die_with_parent()
                if os.getppid() != supervisor:  # it died before the line above (not `== 1`: in a container the supervisor is PID 1)
                    os._exit(1)
                self.selector.close()  # the supervisor's: its epoll descriptor and the sockets below are not this process's business
                for inherited in [ours, self._wake_read, self._wake_write, *(worker.channel for worker in self.workers.values())]:
                    inherited.close()
                if self.listener is not None:
                    self.listener.close()
                self.serve_worker(self.settings, theirs)
            except ConfigError as error:
                print(f"dockyard-registry worker {os.getpid()}: {error}", file=sys.stderr)
                status = STARTUP_FAILURE
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                status = 1
            finally:
                os._exit(status)
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


def worker_count(settings: Settings) -> int:
    return settings.http.workers or os.cpu_count() or 1
