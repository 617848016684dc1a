"""Published ports: `HostConfig.PortBindings` (and `PublishAllPorts` with the image's
`ExposedPorts`) checked at create and bound at start.

The engine publishes as Docker's userland proxy does: the daemon binds each host address and
port itself before the container's process starts (so a port already taken is an error and
nothing starts), and hands the listening sockets to the container's shim, which forwards every
connection (TCP) or datagram (UDP) to the container's address for as long as the container
runs; the sockets close with the shim. No NAT rule is needed, and 127.0.0.1 works (DNAT to a
loopback address would need `route_localnet`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from .errors import EngineError, InvalidParameter

PROTOCOLS = ("tcp", "udp")


class PortAllocated(EngineError):
    status = 500


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    protocol: str
    host_ip: str
    host_ports: tuple[int, int]
    """A range (first, last); (0, 0) for any free port."""

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"


def parse_port_key(key: str) -> tuple[int, str]:
    """"80/tcp" or "80" -> (80, "tcp")."""
    number, _, protocol = str(key).partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidParameter(f"invalid protocol {protocol!r} in port {key!r}: tcp or udp")
    return _port(number, key), protocol


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidParameter(f"invalid port {text!r} in {whole!r}: a number from 1 to 65535")
    return int(text)


def _host_ports(text: str) -> tuple[int, int]:
    if text in ("", "0"):
        return (0, 0)
    first, dash, last = text.partition("-")
    low = _port(first, text)
    high = _port(last, text) if dash else low
    if high < low:
        raise InvalidParameter(f"invalid port range {text!r}")
    return (low, high)


def port_bindings(host_config: dict[str, Any], exposed: dict[str, Any] | None) -> list[PortBinding]:
    """Every binding asked for, checked (InvalidParameter with the reason)."""
    bindings: list[PortBinding] = []
    table = host_config.get("PortBindings") or {}
    if not isinstance(table, dict):
        raise InvalidParameter("PortBindings must be an object of port -> bindings")
    for key, entries in table.items():
        container_port, protocol = parse_port_key(key)
        for entry in entries or [{}]:
            host_ip = (entry or {}).get("HostIp") or ""
            if host_ip:
                try:
                    if ipaddress.ip_address(host_ip).version != 4:
                        raise InvalidParameter(f"IPv6 host addresses are not supported: {host_ip}")
                except ValueError:
                    raise InvalidParameter(f"invalid host IP address {host_ip!r} for port {key}") from None
            host_ports = _host_ports(str((entry or {}).get("HostPort") or ""))
            bindings.append(PortBinding(container_port, protocol, host_ip, host_ports))
    if host_config.get("PublishAllPorts"):
        bound = {binding.key for binding in bindings}
        for key in exposed or {}:
            container_port, protocol = parse_port_key(key)
            if f"{container_port}/{protocol}" not in bound:
                bindings.append(PortBinding(container_port, protocol, "", (0, 0)))
    return bindings


def bind(bindings: list[PortBinding], endpoint: str) -> list[tuple[PortBinding, socket.socket]]:
    """Listening sockets for every binding, or PortAllocated (Docker's message) and none."""
    opened: list[tuple[PortBinding, socket.socket]] = []
    try:
        for binding in bindings:
            opened.append((binding, _bind_one(binding, endpoint)))
    except BaseException:
        for _, sock in opened:
            sock.close()
        raise
    return opened


def _bind_one(binding: PortBinding, endpoint: str) -> socket.socket:
    address = binding.host_ip or "0.0.0.0"
    low, high = binding.host_ports
    kind = socket.SOCK_STREAM if binding.protocol == "tcp" else socket.SOCK_DGRAM
    last_error: OSError | None = None
    for port in range(low, high + 1):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            sock.setblocking(False)
            return sock
        except OSError as error:
            sock.close()
            last_error = error
    shown = f"{low}" if low == high else f"{low}-{high}"
    if last_error is not None and last_error.errno == 98:  # EADDRINUSE
        reason = "port is already allocated"
    else:
        reason = last_error.strerror if last_error else "unknown error"
    raise PortAllocated(f"driver failed programming external connectivity on endpoint {endpoint}: "
                        f"Bind for {address}:{shown} failed: {reason}")  # fmt: skip


def bound_ports(opened: list[tuple[PortBinding, socket.socket]]) -> dict[str, list[dict[str, str]]]:
    """`NetworkSettings.Ports` for the sockets actually bound."""
    table: dict[str, list[dict[str, str]]] = {}
    for binding, sock in opened:
        host, port = sock.getsockname()[:2]
        table.setdefault(binding.key, []).append({"HostIp": host, "HostPort": str(port)})
    return table


def close_all(opened: list[tuple[PortBinding, socket.socket]]) -> None:
    for _, sock in opened:
        with contextlib.suppress(OSError):
            sock.close()
