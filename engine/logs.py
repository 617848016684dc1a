"""Container output: Docker's stream frames, and the log file a container's output is kept in.

A frame is what `attach` and `logs` send without a TTY: an 8-byte header (stream 1 = stdout,
2 = stderr, three zero bytes, big-endian uint32 length) then the payload.

The log file (`containers/<id>/container.log`) is a sequence of records, each one frame header
plus an 8-byte big-endian timestamp (ns since the epoch) before the payload. Output is split at
newlines, so a record holds at most one line (the last record of a burst may be a line's start):
`--tail N` counts records, `--since` compares timestamps. The bytes are kept exactly (no JSON,
no UTF-8 replacement), and stdout and stderr stay apart. Appends only; the shim is the only
writer, readers may read while it writes (a torn last record is ignored until complete).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct(">BxxxI")
RECORD = struct.Struct(">BxxxIQ")
STDOUT, STDERR = 1, 2


def frame(stream: int, data: bytes) -> bytes:
    return HEADER.pack(stream, len(data)) + data


@dataclass(frozen=True)
class LogRecord:
    stream: int
    time_ns: int
    data: bytes


class LogWriter:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: int, data: bytes) -> None:
        stamp = _now_ns()
        out = bytearray()
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            piece = data[start:end]
            out += RECORD.pack(stream, len(piece), stamp) + piece
            start = end
        os.write(self.fd, out)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


def _now_ns() -> int:
    import time

    return time.time_ns()


def read_records(path: Path, offset: int = 0) -> tuple[list[LogRecord], int]:
    """The whole records from byte `offset` on, and the offset after the last whole one."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return [], offset
    records = []
    position = 0
    while position + RECORD.size <= len(data):
        stream, length, stamp = RECORD.unpack_from(data, position)
        end = position + RECORD.size + length
        if end > len(data):
            break
        records.append(LogRecord(stream, stamp, data[position + RECORD.size : end]))
        position = end
    return records, offset + position


def select(records: list[LogRecord], *, stdout: bool, stderr: bool, tail: int | None, since_ns: int = 0, until_ns: int = 0) -> Iterator[LogRecord]:
    """The records a `logs` request asks for (`tail` None = all)."""
    chosen = (
        r
        for r in records
        if ((r.stream == STDOUT and stdout) or (r.stream == STDERR and stderr))
        and r.time_ns >= since_ns
        and (not until_ns or r.time_ns <= until_ns)
    )
    if tail is None:
        yield from chosen
    elif tail > 0:
        yield from deque(chosen, maxlen=tail)
