#!/usr/bin/env python3
"""Server CPU per request, kind by kind, on one Dockyard worker and on the reference registry.

    .venv/bin/python bench/cost.py                 # every kind, 300 requests each
    .venv/bin/python bench/cost.py --count 1000 --kinds ping,blob_head

`bench/run.py` says how Dockyard compares under load; this says which request costs what. It
starts one Dockyard server with `http.workers=1` on fresh storage (then the reference registry,
Debian's `docker-registry`, when it is installed), seeds one image (three small layers, a
config, a manifest), then sends each kind of request `--count` times, one at a time, and
divides the CPU the server's threads used (from /proc/<pid>/task/*/schedstat) by the count. One at a
time and one worker, so the figure is the cost of the request itself, not of contention.

Kinds: `ping` (GET /v2/: the floor every request pays), `blob_head`, `manifest_head`,
`manifest_get`, `tags_list`, `mount_new` (the four mounts of an image into a repository that
does not exist yet, per image), `mount_existing` (one mount into a repository that has others),
`manifest_put_new` (the manifest PUT that completes a dedup push), `dedup_image` (a whole dedup
push as `bench/run.py` does it: HEAD and mount each layer, mount the config, PUT the manifest).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from run import (  # noqa: E402  (the benchmark's own helpers: one copy of server handling)
    OCI_MANIFEST,
    REPO_ROOT,
    VENV_PYTHON,
    Layer,
    Profiler,
    Server,
    children,
    client_session,
    dockyard_server,
    expect,
    fetch_manifest,
    push_bytes,
    push_manifest,
    reference_server,
    summarise_profile,
)

KINDS = ("ping", "blob_head", "manifest_head", "manifest_get", "tags_list", "mount_new", "mount_existing", "manifest_put_new", "dedup_image")
SOURCE = "cost/base"


async def seed(session: aiohttp.ClientSession, base: str) -> tuple[list[str], str, bytes]:
    """One image in SOURCE, three small layers, pushed as bench/run.py pushes its images;
    returns (layer digests, config digest, manifest)."""
    layers = []
    for index in range(3):
        data = os.urandom(4096 * (index + 1))
        layers.append(Layer(index, len(data), await push_bytes(session, base, SOURCE, data)))
    await push_manifest(session, base, SOURCE, "latest", layers)
    manifest = await fetch_manifest(base, SOURCE, "latest")
    return [layer.digest for layer in layers], json.loads(manifest)["config"]["digest"], manifest


def operations(session: aiohttp.ClientSession, base: str, layers: list[str], config: str, manifest: bytes) -> dict[str, Callable[[int], Awaitable[None]]]:
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

    async def call(method: str, path: str, status: int, **kwargs: object) -> None:
        async with session.request(method, base + path, **kwargs) as response:  # type: ignore[arg-type]
            await response.read()
            expect(response, status, f"{method} {path}")

    async def mount(repo: str, blob: str) -> None:
        await call("POST", f"/v2/{repo}/blobs/uploads/", 201, params={"mount": blob, "from": SOURCE})

    async def mount_new(index: int) -> None:
        for blob in [*layers, config]:
            await mount(f"cost/new{index}", blob)

    async def manifest_put_new(index: int) -> None:
        await call("PUT", f"/v2/cost/new{index}/manifests/latest", 201, data=manifest, headers={"Content-Type": OCI_MANIFEST})

    async def dedup_image(index: int) -> None:
        repo = f"cost/dedup{index}"
        for blob in layers:
            await call("HEAD", f"/v2/{repo}/blobs/{blob}", 404)
            await mount(repo, blob)
        await mount(repo, config)
        await call("PUT", f"/v2/{repo}/manifests/latest", 201, data=manifest, headers={"Content-Type": OCI_MANIFEST})

    return {
        "ping": lambda index: call("GET", "/v2/", 200),
        "blob_head": lambda index: call("HEAD", f"/v2/{SOURCE}/blobs/{layers[index % 3]}", 200),
        "manifest_head": lambda index: call("HEAD", f"/v2/{SOURCE}/manifests/latest", 200, headers={"Accept": OCI_MANIFEST}),
        "manifest_get": lambda index: call("GET", f"/v2/{SOURCE}/manifests/{digest}", 200, headers={"Accept": OCI_MANIFEST}),
        "tags_list": lambda index: call("GET", f"/v2/{SOURCE}/tags/list", 200),
        "mount_new": mount_new,
        "mount_existing": lambda index: mount(f"cost/new{index % 10}", layers[0]),
        "manifest_put_new": manifest_put_new,
        "dedup_image": dedup_image,
    }


def cpu_ns(pids: list[int]) -> int:
    """CPU time of every thread of `pids`, in nanoseconds (the scheduler's own count: finer than
    /proc/<pid>/stat's clock ticks, which would need thousands of requests per figure)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                    total += int(handle.read().split()[0])
            except OSError:
                continue  # a thread that ended meanwhile
    return total


async def measure(server: Server, kinds: list[str], count: int, profiler: Profiler) -> dict[str, tuple[float, float]]:
    """kind -> (server CPU, wall time) per request or image, in microseconds."""
    server.start()
    try:
        server.wait_ready()
        async with client_session(1) as session:
            layers, config, manifest = await seed(session, server.url)
            run = operations(session, server.url, layers, config, manifest)
            for warm in range(20):  # first-call costs (imports, caches, prepared statements)
                await run["ping"](warm)
                await run["blob_head"](warm)
            costs = {}
            for kind in kinds:
                await asyncio.sleep(1.5)  # let the activity flush and other timers fall outside
                if profiler.binary and server.name == "dockyard":
                    profiler.start((children(server.pid) or [server.pid])[0], kind)  # the worker, if there is a supervisor
                before, started = cpu_ns(server.pids()), time.perf_counter()
                for index in range(count):
                    await run[kind](index)
                wall = (time.perf_counter() - started) / count * 1e6
                costs[kind] = ((cpu_ns(server.pids()) - before) / count / 1000, wall)
                if server.name == "dockyard":
                    profiler.stop()
            return costs
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="requests (or images) per kind (default 300)")
    parser.add_argument("--workdir", help="parent of the temporary storage (default: the system temp dir; e.g. /dev/shm to leave the file system's cost out)")
    parser.add_argument("--py-spy", metavar="DIR", help="also profile the worker per kind with py-spy into DIR/<kind>.txt (profiling adds CPU)")
    parser.add_argument(
        "--reference-binary", default="/usr/bin/docker-registry", help="measure the reference registry too, beside Dockyard (empty: Dockyard only)"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from: {', '.join(KINDS)}")
    args = parser.parse_args()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if "manifest_put_new" in kinds and "mount_new" not in kinds:
        parser.error("manifest_put_new needs mount_new first (it completes those repositories)")
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(VENV_PYTHON.parent))
    if args.py_spy and not spy:
        parser.error("--py-spy needs py-spy (pip install py-spy)")
    profiler = Profiler(spy if args.py_spy else None, Path(args.py_spy or "."), 1000)
    reference = args.reference_binary if args.reference_binary and os.path.exists(args.reference_binary) else None
    with tempfile.TemporaryDirectory(prefix="dockyard-cost-", dir=args.workdir) as workdir:
        costs = asyncio.run(measure(dockyard_server(Path(workdir), REPO_ROOT, str(VENV_PYTHON), "error", workers=1), kinds, args.count, profiler))
        theirs = asyncio.run(measure(reference_server(Path(workdir), reference, False), kinds, args.count, Profiler(None, Path("."), 0))) if reference else {}
    print(f"{'':18} {'server CPU (us)':^26} {'wall time, one at a time (us)':^30}")
    print(f"{'':18} {'dockyard':>9} {'reference':>9} {'ratio':>6} {'dockyard':>9} {'reference':>9} {'ratio':>6}")
    for kind, (cpu, wall) in costs.items():
        columns = f"{kind:18} {cpu:9.0f} "
        other = theirs.get(kind)
        columns += f"{other[0]:9.0f} {cpu / other[0]:6.2f} " if other else f"{'':9} {'':6} "
        columns += f"{wall:9.0f} " + (f"{other[1]:9.0f} {wall / other[1]:6.2f}" if other else "")
        print(f"{columns}  per {'image' if kind in ('mount_new', 'dedup_image') else 'request'}")
        if kind in profiler.files:
            print("\n".join(summarise_profile(profiler.files[kind], top=25)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
