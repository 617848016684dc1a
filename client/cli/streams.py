"""The terminal side of `run`, `attach`, `exec` and `logs`: a hijacked daemon connection relayed
to this process's stdin, stdout and stderr, as the docker CLI does.

- Without a TTY, the daemon sends multiplexed frames: stdout frames go to stdout, stderr frames
  to stderr. Our stdin is copied in, and its end half-closes the connection (the container's
  stdin then ends too, when it was opened with `-i`).
- With a TTY, bytes are raw both ways; the local terminal is put in raw mode for the session
  and restored afterwards, and window-size changes (SIGWINCH) are sent to the daemon.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..daemon import demux

CHUNK = 65536


def terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return size.lines, size.columns


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """Raw mode on stdin for the duration, when it is a terminal and `enabled`."""
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def forward_resizes(resize: Callable[[int, int], None] | None) -> Iterator[None]:
    if resize is None or not sys.stdout.isatty():
        yield
        return

    def changed(*_: Any) -> None:
        with contextlib.suppress(Exception):
            resize(*terminal_size())

    previous = signal.signal(signal.SIGWINCH, changed)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _pump_stdin(sock: Any, source: BinaryIO) -> None:
    """Copy stdin into the connection until stdin ends, then half-close it."""
    fd = source.fileno()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            data = os.read(fd, CHUNK)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(2 - 1)  # SHUT_WR


def relay(sock: Any, *, tty: bool, stdin: bool, resize: Callable[[int, int], None] | None = None) -> None:
    """Relay a hijacked connection until the daemon ends the output."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    if stdin:
        threading.Thread(target=_pump_stdin, args=(sock, sys.stdin.buffer), daemon=True).start()
    with raw_terminal(tty and stdin), forward_resizes(resize if tty else None):

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    data = sock.recv(CHUNK)
                except InterruptedError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                yield data

        if tty:
            for data in chunks():
                out.write(data)
                out.flush()
        else:
            for stream, data in demux(chunks()):
                target = err if stream == 2 else out
                target.write(data)
                target.flush()
    with contextlib.suppress(OSError):
        sock.close()
