"""Running CNI plugins (the containernetworking-plugins binaries: bridge, host-local, loopback).

A plugin is an executable that reads a network configuration (JSON) on stdin, takes the
operation and the container from `CNI_*` environment variables, and answers a result (or an
error object) on stdout: the CNI specification's whole protocol. The engine uses three:
`loopback` brings `lo` up in a new namespace, `bridge` makes the Linux bridge if missing, a veth
pair into the namespace and, with `ipMasq`, the NAT rule; its `host-local` IPAM keeps the
addresses handed out as files under the network's data directory.

`DEL` must succeed for a namespace that is already gone (the specification requires plugins to
tolerate that), which is what makes clean-up after a crash possible: the IPAM entry and the
iptables rules go, the veth went with the namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from .errors import EngineError

CNI_VERSION = "1.0.0"
PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
PLUGIN_TIMEOUT = 60.0


class CniError(EngineError):
    status = 500


def plugin_dirs() -> list[str]:
    return [directory for directory in PLUGIN_DIRS if Path(directory).is_dir()]


def find_plugin(name: str) -> Path:
    for directory in plugin_dirs():
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        f"the CNI plugin {name!r} is not installed (looked in {', '.join(PLUGIN_DIRS)}); "
        "on Debian: apt-get install containernetworking-plugins"
    )


async def run(command: str, conf: dict[str, Any], *, container_id: str, netns: str, ifname: str, args: str = "") -> dict[str, Any]:
    """Run the plugin `conf["type"]` for `command` (ADD, DEL, CHECK); its JSON result ({} for DEL)."""
    plugin = find_plugin(conf["type"])
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": ":".join(plugin_dirs()),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    if args:
        env["CNI_ARGS"] = args
    process = await asyncio.create_subprocess_exec(
        str(plugin), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    payload = json.dumps({"cniVersion": CNI_VERSION, **conf}).encode()
    try:
        out, err = await asyncio.wait_for(process.communicate(payload), PLUGIN_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise CniError(f"the CNI plugin {conf['type']} did not answer {command} in {PLUGIN_TIMEOUT:.0f} s") from None
    try:
        answer = json.loads(out or b"{}")
    except ValueError:
        answer = {}
    if process.returncode != 0:
        message = answer.get("msg") or err.decode(errors="replace").strip() or f"exit status {process.returncode}"
        details = answer.get("details")
        raise CniError(f"{conf['type']} {command} failed: {message}" + (f" ({details})" if details else ""))
    return answer if isinstance(answer, dict) else {}
