"""`-p`/`--publish` and `--expose` as the docker CLI reads them, into the Engine API's
`ExposedPorts` and `HostConfig.PortBindings`:

    80                      a random host port for container port 80/tcp
    8080:80                 host port 8080 on every address
    127.0.0.1:8080:80/udp   one address, UDP
    127.0.0.1::80           one address, a random port
    8000-8001:80-81         ranges of the same length, pairwise
    8000-8010:80            any free port of the range
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .cli.context import UsageError

PROTOCOLS = ("tcp", "udp")


def _range(text: str, what: str, spec: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    try:
        low, high = int(first), int(last) if dash else int(first)
    except ValueError:
        raise UsageError(f"invalid {what} {text!r} in {spec!r}") from None
    if not (0 < low <= high < 65536):
        raise UsageError(f"invalid {what} {text!r} in {spec!r}: ports are 1 to 65535")
    return low, high


def parse_publish(spec: str) -> list[tuple[str, dict[str, str]]]:
    """One `-p` value: (container "port/proto", {"HostIp", "HostPort"}) pairs."""
    rest, slash, protocol = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
    protocol = protocol.lower() or "tcp"
    if protocol not in PROTOCOLS:
        raise UsageError(f"invalid protocol {protocol!r} in {spec!r}: tcp or udp")
    parts = rest.split(":")
    if len(parts) > 3:
        raise UsageError(f"invalid port specification {spec!r}: [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
    host_ip, host_port, container = ("", "", parts[0]) if len(parts) == 1 else (("", *parts) if len(parts) == 2 else tuple(parts))
    if host_ip:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise UsageError(f"invalid IP address {host_ip!r} in {spec!r}") from None
    low, high = _range(container, "container port", spec)
    if not host_port:
        return [(f"{port}/{protocol}", {"HostIp": host_ip, "HostPort": ""}) for port in range(low, high + 1)]
    host_low, host_high = _range(host_port, "host port", spec)
    if high == low:
        shown = str(host_low) if host_low == host_high else f"{host_low}-{host_high}"
        return [(f"{low}/{protocol}", {"HostIp": host_ip, "HostPort": shown})]
    if host_high - host_low != high - low:
        raise UsageError(f"invalid ranges in {spec!r}: the host and container ranges must be as long")
    return [(f"{port}/{protocol}", {"HostIp": host_ip, "HostPort": str(host_low + port - low)}) for port in range(low, high + 1)]


def port_settings(publish: list[str] | None, expose: list[str] | None) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """(ExposedPorts, PortBindings) for every `--expose` and `-p`."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in expose or []:
        port, _, protocol = spec.partition("/")
        low, high = _range(port, "port", spec)
        for number in range(low, high + 1):
            exposed[f"{number}/{protocol or 'tcp'}"] = {}
    for spec in publish or []:
        for key, binding in parse_publish(spec):
            exposed[key] = {}
            bindings.setdefault(key, []).append(binding)
    return exposed, bindings


def format_ports(ports: list[dict[str, Any]]) -> str:
    """`ps`'s PORTS column: `127.0.0.1:8080->80/tcp, 443/tcp`."""
    shown = []
    for port in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""), p.get("PublicPort", 0))):
        target = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
        shown.append(f"{port.get('IP', '')}:{port['PublicPort']}->{target}" if port.get("PublicPort") else target)
    return ", ".join(dict.fromkeys(shown))
