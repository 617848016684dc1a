"""runc, driven as a subprocess (there is no maintained Python binding): kill, state, delete,
pause, resume. Starting processes is the shim's job (`engine.shim`)."""

from __future__ import annotations

import asyncio
import json
import signal as signals
from pathlib import Path
from typing import Any

from .errors import InvalidParameter, RuntimeFailure


def parse_signal(text: str | int | None, default: int = signals.SIGKILL) -> int:
    """`9`, `KILL`, `SIGKILL` -> 9; InvalidParameter for anything else."""
    if text is None or text == "":
        return default
    if isinstance(text, int) or str(text).isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
        raise InvalidParameter(f"Invalid signal: {text}")
    name = str(text).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {text}") from None


class Runc:
    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    async def _run(self, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            self.binary, "--root", str(self.root), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def kill(self, container_id: str, signal: int) -> None:
        code, _, err = await self._run("kill", container_id, str(signal))
        if code != 0 and "not running" not in err and "container not running" not in err:
            raise RuntimeFailure(f"cannot signal the container: {err.strip()}")

    async def state(self, container_id: str) -> dict[str, Any] | None:
        code, out, _ = await self._run("state", container_id)
        if code != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    async def delete(self, container_id: str) -> None:
        await self._run("delete", "--force", container_id)

    async def pause(self, container_id: str) -> None:
        code, _, err = await self._run("pause", container_id)
        if code != 0:
            raise RuntimeFailure(f"cannot pause the container: {err.strip()}")

    async def resume(self, container_id: str) -> None:
        code, _, err = await self._run("resume", container_id)
        if code != 0:
            raise RuntimeFailure(f"cannot resume the container: {err.strip()}")
