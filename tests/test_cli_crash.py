"""A `dockyard pull` killed with SIGKILL mid-download leaves no half image, and the next pull
resumes the interrupted layer with a Range request."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.conftest import RegistryProcess
from tests.images import Image, LayerBuilder, base_layer, host_architecture, image_config, payload, update_layer
from tests.registry_proxy import Fault, RegistryProxy
from tests.test_cli import Dockyard, dockyard, put_image  # noqa: F401  (fixture)


async def run(tool: Dockyard, *args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the event loop that serves the proxy."""
    process = await asyncio.create_subprocess_exec(
        *tool.command(*args), env=tool.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("registry_process", ["filesystem"], indirect=True)
async def test_pull_killed_mid_layer_leaves_no_image_and_the_next_pull_resumes(
    dockyard: Dockyard, registry_process: RegistryProcess, tmp_path: Path
) -> None:
    layers = [base_layer(), LayerBuilder().file("data/big.bin", payload(4 * 1024 * 1024, "crash")).build(), update_layer("x")]
    image = Image(config=image_config(layers, host_architecture(), "crash"), layers=layers)
    name = f"{registry_process.host}:{registry_process.port}/acme/app:1"
    put_image(dockyard, image, name)
    assert (await run(dockyard, "push", name))[0] == 0

    proxy = await RegistryProxy(registry_process.url).start()
    try:
        big = max(image.layers, key=lambda layer: layer.size)
        proxy.add_fault(Fault(lambda request: request.method == "GET" and big.digest in request.path, pause=0.05))
        fresh = dockyard.with_store(tmp_path / "fresh")
        through_proxy = f"{proxy.host}/acme/app:1"
        process = await asyncio.create_subprocess_exec(
            *fresh.command("pull", through_proxy), env=fresh.env(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        partial = fresh.store / "ingest" / f"{big.digest.split(':')[1]}.partial"
        for _ in range(600):
            if partial.exists() and partial.stat().st_size >= 1024 * 1024:  # the client writes 1 MiB at a time
                break
            await asyncio.sleep(0.02)
        assert partial.exists(), "the pull got part of the big layer before it was killed"
        process.send_signal(signal.SIGKILL)
        await process.wait()
        written = partial.stat().st_size
        assert 0 < written < big.size

        code, out, _ = await run(fresh, "images")
        assert code == 0 and "acme/app" not in out, "no half image is visible"
        code, _, err = await run(fresh, "inspect", through_proxy)
        assert code == 1 and err.startswith("Error: ")

        code, out, err = await run(fresh, "pull", through_proxy)
        assert code == 0, err
        gets = proxy.requests("GET", big.digest)
        assert len(gets) == 2
        resumed_from = int(gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
        assert 0 < resumed_from <= written, "the second pull asked only for what was missing"
        code, out, _ = await run(fresh, "inspect", through_proxy)
        assert code == 0
        assert json.loads(out)[0]["RootFS"]["Layers"] == image.diff_ids
        assert fresh.library().read_blob(big.digest) == big.blob
    finally:
        await proxy.close()
