"""/_ping, /version, /info."""

from __future__ import annotations

import os
import platform
import sys

from aiohttp import web

from .app import API_VERSION, ENGINE, MIN_API_VERSION, Router


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dockyard")
    except PackageNotFoundError:
        return "0.0.0"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def ping(request: web.Request) -> web.Response:
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache", "Builder-Version": "1"}
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Type": "text/plain; charset=utf-8", "Content-Length": "2"})
    return web.Response(text="OK", headers=headers)


async def version(request: web.Request) -> web.Response:
    release = platform.release()
    return web.json_response(
        {
            "Platform": {"Name": "Dockyard Engine"},
            "Components": [
                {"Name": "Engine", "Version": _version(), "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                 "Os": "linux", "Arch": _arch(), "KernelVersion": release, "GitCommit": "", "GoVersion": f"python{sys.version.split()[0]}"}},
                {"Name": "runc", "Version": request.app[ENGINE].runtime_version, "Details": {}},
            ],  # fmt: skip
            "Version": _version(),
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": f"python{sys.version.split()[0]}",
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": release,
            "BuildTime": "",
        }
    )


async def info(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    records = [live.record for live in engine.containers.live.values()]
    running = sum(1 for r in records if r.State.Running and not r.State.Paused)
    paused = sum(1 for r in records if r.State.Paused)
    images = engine.images.store.images()
    return web.json_response(
        {
            "ID": engine.daemon_id,
            "Containers": len(records),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(records) - running - paused,
            "Images": len(images),
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "DockerRootDir": str(engine.settings.data_root),
            "Plugins": {"Volume": [], "Network": ["host", "null"], "Log": ["local"]},
            "MemoryLimit": False,
            "SwapLimit": False,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "1",
            "NCPU": os.cpu_count() or 1,
            "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "Name": platform.node(),
            "ServerVersion": _version(),
            "OperatingSystem": "Dockyard on " + platform.system(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "KernelVersion": platform.release(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
            "DefaultRuntime": "runc",
            "Runtimes": {"runc": {"path": engine.settings.runtime}},
            "LiveRestoreEnabled": engine.settings.on_shutdown == "keep",
            "Labels": [],
            "ExperimentalBuild": False,
            "Warnings": None,
            "SecurityOptions": [],
            "Swarm": {"LocalNodeState": "inactive"},
        }
    )


def routes(router: Router) -> None:
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
