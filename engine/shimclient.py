"""The daemon's side of a shim (`engine.shim`): spawn it, talk to its socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import RuntimeFailure
from .shim import ShimSpec, short_path

HANDSHAKE_TIMEOUT = 60.0


async def spawn(directory: Path, spec: ShimSpec, pass_fds: tuple[int, ...] = ()) -> int:
    """Start a shim for `spec` in `directory` (created); its PID once it is ready.

    `pass_fds`: descriptors the shim inherits (the listening sockets of `spec.forwards`).

    The shim runs in a session of its own, so it outlives the daemon; its stderr goes to
    `shim.log`. RuntimeFailure carries runc's message when the process cannot be created.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "shim.json").write_text(spec.model_dump_json())
    log = os.open(directory / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.shim", str(directory),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
            start_new_session=True, cwd="/", pass_fds=pass_fds,
        )  # fmt: skip
    finally:
        os.close(log)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), HANDSHAKE_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        raise RuntimeFailure("the container's shim did not start in time") from None
    try:
        answer = json.loads(line or b"{}")
    except ValueError:
        answer = {}
    if not answer.get("ok"):
        await process.wait()
        message = answer.get("error") or _tail(directory / "shim.log") or "the container's shim failed to start"
        raise RuntimeFailure(message)
    # the shim lives on; reap it in the background if it ends while we run
    asyncio.ensure_future(process.wait())
    return process.pid


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
    return ""


async def connect(directory: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with short_path(directory, "shim.sock") as path:
        return await asyncio.open_unix_connection(path, limit=1 << 20)


async def request(directory: Path, op: str, **fields: Any) -> dict[str, Any]:
    """One request, one JSON answer. ConnectionError when the shim is gone."""
    reader, writer = await connect(directory)
    try:
        writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("the shim closed the connection")
        return json.loads(line)
    finally:
        writer.close()


async def attach(directory: Path, *, stdin: bool, stdout: bool, stderr: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(directory)
    writer.write(json.dumps({"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}).encode() + b"\n")
    await writer.drain()
    return reader, writer


def read_exit(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / "exit.json").read_bytes())
    except (OSError, ValueError):
        return None
