"""`dockyard network ...` and `dockyard port`, through the daemon, printing what docker prints."""

from __future__ import annotations

import json
from typing import Any

from .containers import _each, _filters, _labels
from .context import Context, UsageError
from .output import table


def network_command(ctx: Context) -> int:
    args = ctx.args
    api = ctx.daemon()
    action = args.network_command
    if action == "create":
        pool: dict[str, str] = {}
        for key, value in (("Subnet", args.subnet), ("Gateway", args.gateway), ("IPRange", args.ip_range)):
            if value:
                pool[key] = value
        options = dict(_labels(args.opt))
        body: dict[str, Any] = {"Name": args.name, "Driver": args.driver, "Internal": args.internal, "Attachable": args.attachable,
                                "Labels": _labels(args.label), "Options": options,
                                "IPAM": {"Driver": "default", "Config": [pool] if pool else []}, "CheckDuplicate": True}  # fmt: skip
        ctx.print(api.create_network(body)["Id"])
        return 0
    if action == "ls":
        networks = api.networks(_filters(args.filter))
        if args.quiet:
            for network in networks:
                ctx.print(network["Id"] if args.no_trunc else network["Id"][:12])
            return 0
        rows = [(network["Id"] if args.no_trunc else network["Id"][:12], network["Name"], network["Driver"], network["Scope"])
                for network in networks]  # fmt: skip
        ctx.print(table(("NETWORK ID", "NAME", "DRIVER", "SCOPE"), rows))
        return 0
    if action == "inspect":
        documents: list[dict[str, Any]] = []
        status = ctx.each(args.names, lambda name: documents.append(api.inspect_network(name)))
        ctx.print(json.dumps(documents, indent=4))
        return status
    if action == "rm":
        return _each(ctx, args.names, api.remove_network)
    if action == "connect":
        endpoint: dict[str, Any] = {"Aliases": args.alias or None}
        if args.ip:
            endpoint["IPAMConfig"] = {"IPv4Address": args.ip}
        api.connect(args.network, args.container, endpoint)
        return 0
    if action == "disconnect":
        api.disconnect(args.network, args.container, force=args.force)
        return 0
    for name in api.prune_networks().get("NetworksDeleted") or []:
        ctx.print(name)
    return 0


def port_command(ctx: Context) -> int:
    """`dockyard port CONTAINER [PORT[/PROTO]]`: the published addresses, as docker prints them."""
    args = ctx.args
    ports = ctx.daemon().inspect_container(args.container)["NetworkSettings"].get("Ports") or {}
    if args.port:
        key = args.port if "/" in args.port else f"{args.port}/tcp"
        bindings = ports.get(key)
        if not bindings:
            raise UsageError(f"No public port '{key}' published for {args.container}")
        for binding in bindings:
            ctx.print(f"{binding['HostIp']}:{binding['HostPort']}")
        return 0
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        for binding in ports[key] or []:
            ctx.print(f"{key} -> {binding['HostIp']}:{binding['HostPort']}")
    return 0
