"""Health checks: `HEALTHCHECK` in the image or `--health-*` at create (`Config.Healthcheck`),
run by the daemon while the container runs, with Docker's rules:

- the first probe runs `Interval` after the start (default 30 s), then one every `Interval`;
- a probe is the test command run in the container as an exec (`CMD` argv, or `CMD-SHELL`
  through `/bin/sh -c`); exit 0 is a success; one that outlives `Timeout` (default 30 s) is
  killed and counts as a failure;
- `Retries` (default 3) failures in a row make the container `unhealthy`; one success makes it
  `healthy`; during `StartPeriod` failures do not count, a success still does;
- `State.Health` keeps the status, the failing streak and the last five probes (start, end,
  exit code, the first 4 KiB of output); `ps` shows `(healthy)`, `(unhealthy)` or
  `(health: starting)`. A check of `["NONE"]` (`--no-healthcheck`) turns the image's off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import EngineError
from .logs import HEADER
from .shim import now_text

if TYPE_CHECKING:
    from .containers import Live
    from .records import Container, ContainerFiles

log = logging.getLogger("dockyard.engine")

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_RETRIES = 3
KEPT_PROBES = 5
MAX_OUTPUT = 4096


@dataclass(frozen=True)
class HealthCheck:
    command: list[str]
    interval: float
    timeout: float
    start_period: float
    retries: int


def health_check(config: dict[str, Any]) -> HealthCheck | None:
    """The container's check, or None (no check, or `NONE`)."""
    check = config.get("Healthcheck") or {}
    test = check.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        command = list(test[1:])
    elif test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        command = list(test)  # an old form: the argv itself
    if not command:
        return None

    def seconds(key: str, default: int) -> float:
        value = check.get(key) or 0
        return (value if value > 0 else default) / SECOND

    retries = check.get("Retries") or 0
    return HealthCheck(command, seconds("Interval", DEFAULT_INTERVAL), seconds("Timeout", DEFAULT_TIMEOUT),
                       (check.get("StartPeriod") or 0) / SECOND, retries if retries > 0 else DEFAULT_RETRIES)  # fmt: skip


def merge_health_check(wanted: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """Docker's merge: the image's check, with any field the create request sets over it."""
    if not wanted:
        return image or None
    if not image or wanted.get("Test"):
        return wanted
    merged = dict(image)
    merged.update({key: value for key, value in wanted.items() if value})
    return merged


def _read_frames(data: bytes) -> bytes:
    out = bytearray()
    while len(data) >= HEADER.size:
        _, size = HEADER.unpack_from(data)
        out += data[HEADER.size : HEADER.size + size]
        data = data[HEADER.size + size :]
    return bytes(out)


class HealthMixin:
    """The health-check half of `Containers` (which provides exec, `_save` and `files`)."""

    def _save(self, container: Container) -> None: ...

    def files(self, container: Container) -> ContainerFiles: ...

    def exec_create(self, ref: str, body: dict[str, Any]) -> str: ...

    async def exec_start(self, exec_id: str, *, tty: bool | None = None, console: tuple[int, int] | None = None) -> Any: ...

    execs: dict[str, Any]

    def _start_health(self, live: Live) -> None:
        check = health_check(live.record.Config)
        if check is None:
            return
        if live.record.State.Health is None or not live.record.State.Running:
            live.record.State.Health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        live.health = asyncio.ensure_future(self._health_loop(live, check))

    def _stop_health(self, live: Live) -> None:
        if live.health is not None:
            live.health.cancel()
            live.health = None

    async def _health_loop(self, live: Live, check: HealthCheck) -> None:
        record = live.record
        started = time.monotonic()
        while True:
            await asyncio.sleep(check.interval)
            if not record.State.Running:
                return
            if record.State.Paused:
                continue
            result = await self._probe(record, check)
            health = record.State.Health or {"Status": "starting", "FailingStreak": 0, "Log": []}
            health["Log"] = [*(health.get("Log") or []), result][-KEPT_PROBES:]
            if result["ExitCode"] == 0:
                health["Status"], health["FailingStreak"] = "healthy", 0
            elif time.monotonic() - started >= check.start_period or health["Status"] != "starting":
                health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                if health["FailingStreak"] >= check.retries:
                    health["Status"] = "unhealthy"
            if not record.State.Running:
                return
            record.State.Health = health
            self._save(record)

    async def _probe(self, record: Container, check: HealthCheck) -> dict[str, Any]:
        began = now_text()
        body = {"Cmd": check.command, "AttachStdout": True, "AttachStderr": True}
        try:
            exec_id = self.exec_create(record.Id, body)
        except EngineError as error:
            return {"Start": began, "End": now_text(), "ExitCode": -1, "Output": error.message}
        execution = self.execs[exec_id]
        execution.probe = True
        output = bytearray()
        try:
            execution, connection, failure = await self.exec_start(exec_id)
            if failure is not None:
                return {"Start": began, "End": now_text(), "ExitCode": execution.exit_code or 126, "Output": failure}
            try:
                await asyncio.wait_for(self._collect(connection, output, execution), check.timeout)
            except asyncio.TimeoutError:
                if execution.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(execution.pid, signal.SIGKILL)  # the exec's process, a child of its shim
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(execution.done.wait(), 5)
                return {"Start": began, "End": now_text(), "ExitCode": -1,
                        "Output": f"Health check exceeded timeout ({check.timeout:g}s)"}  # fmt: skip
            text = _read_frames(bytes(output))[:MAX_OUTPUT].decode(errors="replace")
            return {"Start": began, "End": now_text(), "ExitCode": execution.exit_code, "Output": text}
        finally:
            self.execs.pop(exec_id, None)  # probes are not the container's execs
            if execution.directory is not None:
                shutil.rmtree(execution.directory, ignore_errors=True)

    @staticmethod
    async def _collect(connection: Any, output: bytearray, execution: Any) -> None:
        if connection is not None:
            reader, writer = connection
            while chunk := await reader.read(65536):
                if len(output) < MAX_OUTPUT * 4:
                    output += chunk
            writer.close()
        await execution.done.wait()
