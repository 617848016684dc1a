"""Networks: the records (`networks/<id>.json`), address planning, and CNI attachments.

Three networks always exist, as in Docker: `bridge` (the default: a Linux bridge of its own,
`bridge_name`/`bridge_subnet` in the settings), `host` and `none`. User-defined networks are
bridges too (`dy-<12 hex>`), each with a subnet given or taken from the pool (`network_pool`, cut
into /24s), never overlapping another network or a route of the host. Containers on a
user-defined network find each other by name, alias and short ID through their /etc/hosts,
which the engine rewrites whenever a container joins or leaves (see engine.sandbox); on the
default bridge they do not, as in Docker.

The bridges, veth pairs, addresses and NAT rules are made and removed by the CNI `bridge`
plugin with `host-local` IPAM (its allocations under `networks/ipam/`); this module decides
what to ask for. A bridge outlives its containers and goes with its network, or with the daemon
when it stops and nothing uses it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from . import cni
from .container_config import NotFoundNetwork
from .errors import Conflict, EngineError, InvalidParameter, NotFound
from .names import new_id
from .records import Endpoint
from .shim import now_text

BUILTIN = ("bridge", "host", "none")
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MAX_BRIDGE_NAME = 15  # IFNAMSIZ - 1


class Forbidden(EngineError):
    status = 403


class Network(BaseModel):
    """A network as `docker network inspect` shows it, plus the engine's own fields."""

    model_config = ConfigDict(extra="allow")

    Name: str
    Id: str
    Created: str
    Scope: str = "local"
    Driver: str = "bridge"
    EnableIPv6: bool = False
    IPAM: dict[str, Any] = Field(default_factory=lambda: {"Driver": "default", "Options": None, "Config": []})
    Internal: bool = False
    Attachable: bool = False
    Ingress: bool = False
    ConfigFrom: dict[str, str] = Field(default_factory=lambda: {"Network": ""})
    ConfigOnly: bool = False
    Options: dict[str, str] = Field(default_factory=dict)
    Labels: dict[str, str] = Field(default_factory=dict)
    # -- the engine's own --
    bridge: str = ""
    """The Linux bridge (empty for host and none)."""

    @property
    def is_bridge(self) -> bool:
        return self.Driver == "bridge"

    @property
    def user_defined(self) -> bool:
        return self.Name not in BUILTIN

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.IPAM["Config"][0]["Subnet"])

    @property
    def gateway(self) -> str:
        return self.IPAM["Config"][0].get("Gateway") or str(next(self.subnet.hosts()))

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude={"bridge"})


def host_routes(exclude_interfaces: set[str]) -> list[tuple[str, ipaddress.IPv4Network]]:
    """The host's IPv4 routes (interface, destination) but the default route, from /proc/net/route."""
    routes = []
    with contextlib.suppress(OSError), open("/proc/net/route") as table:
        next(table, None)
        for line in table:
            fields = line.split()
            if len(fields) < 8 or fields[0] in exclude_interfaces:
                continue
            destination = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
            mask = socket.inet_ntoa(struct.pack("<I", int(fields[7], 16)))
            network = ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)
            if network.prefixlen:
                routes.append((fields[0], network))
    return routes


class Networks:
    def __init__(self, root: Path, *, bridge_name: str, bridge_subnet: str, pool: str, pool_prefix: int = 24,
                 ip_masquerade: bool = True) -> None:  # fmt: skip
        self.root = root
        self.ip_masquerade = ip_masquerade
        self.ipam_dir = root / "ipam"
        self.bridge_name = bridge_name
        self.bridge_subnet = ipaddress.IPv4Network(bridge_subnet)
        self.pool = ipaddress.IPv4Network(pool)
        self.pool_prefix = pool_prefix
        self.networks: dict[str, Network] = {}

    # -- records -------------------------------------------------------------------------------

    def load(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.root.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                network = Network.model_validate_json(path.read_bytes())
                self.networks[network.Id] = network
        existing = {network.Name: network for network in self.networks.values()}
        default = existing.get("bridge")
        subnet = str(self.bridge_subnet)
        if default is None or default.bridge != self.bridge_name or default.IPAM["Config"][0]["Subnet"] != subnet:
            default = default or Network(Name="bridge", Id=new_id(), Created=now_text())
            default.bridge = self.bridge_name
            default.IPAM = {"Driver": "default", "Options": None,
                            "Config": [{"Subnet": subnet, "Gateway": str(next(self.bridge_subnet.hosts()))}]}  # fmt: skip
            default.Options = {
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                BRIDGE_NAME_OPTION: self.bridge_name,
                "com.docker.network.driver.mtu": "1500",
            }
            self._save(default)
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in existing:
                self._save(Network(Name=name, Id=new_id(), Created=now_text(), Driver=driver))

    def _save(self, network: Network) -> None:
        self.networks[network.Id] = network
        path = self.root / f"{network.Id}.json"
        temp = path.with_name(f".{path.name}.tmp")
        with open(temp, "w") as out:
            out.write(network.model_dump_json(indent=1))
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, path)

    def get(self, ref: str) -> Network:
        """By full ID, name, or unique ID prefix (Docker's order)."""
        if ref in self.networks:
            return self.networks[ref]
        for network in self.networks.values():
            if network.Name == ref:
                return network
        matches = [network for network in self.networks.values() if ref and network.Id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise NotFound(f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)")
        raise NotFoundNetwork(ref)

    def list(self, filters: dict[str, list[str]] | None = None) -> list[Network]:
        chosen = []
        for network in sorted(self.networks.values(), key=lambda n: n.Created):
            if _matches(network, filters or {}):
                chosen.append(network)
        return chosen

    # -- create and remove ---------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> Network:
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("network name is required")
        if not NAME.match(name):
            raise InvalidParameter(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if name in BUILTIN:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        if any(network.Name == name for network in self.networks.values()):
            raise Conflict(f"network with name {name} already exists")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise InvalidParameter("IPv6 networks are not supported by this engine")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        network_id = new_id()
        bridge = options.get(BRIDGE_NAME_OPTION) or f"dy-{network_id[:12]}"
        if len(bridge) > MAX_BRIDGE_NAME or not NAME.match(bridge):
            raise InvalidParameter(f"invalid bridge name {bridge!r}: at most {MAX_BRIDGE_NAME} of [a-zA-Z0-9_.-]")
        if any(network.bridge == bridge for network in self.networks.values()):
            raise Conflict(f"the bridge {bridge} is already used by another network")
        pool = self._ipam_config(body.get("IPAM") or {})
        network = Network(
            Name=name, Id=network_id, Created=now_text(), Internal=bool(body.get("Internal")),
            Attachable=bool(body.get("Attachable")), Options=options, Labels=dict(body.get("Labels") or {}),
            IPAM={"Driver": "default", "Options": (body.get("IPAM") or {}).get("Options") or {}, "Config": [pool]}, bridge=bridge,
        )  # fmt: skip
        self._save(network)
        return network

    def _ipam_config(self, ipam: dict[str, Any]) -> dict[str, str]:
        driver = ipam.get("Driver") or "default"
        if driver != "default":
            raise NotFound(f'plugin "{driver}" not found')
        configs = ipam.get("Config") or []
        if len(configs) > 1:
            raise InvalidParameter("only one IPAM config (one IPv4 subnet) per network is supported")
        wanted = configs[0] if configs else {}
        if not wanted.get("Subnet"):
            if wanted.get("Gateway") or wanted.get("IPRange"):
                raise InvalidParameter("a gateway or an IP range needs a subnet")
            subnet = self._allocate()
            return {"Subnet": str(subnet), "Gateway": str(next(subnet.hosts()))}
        try:
            subnet = ipaddress.ip_network(wanted["Subnet"], strict=False)
        except ValueError:
            raise InvalidParameter(f"invalid subnet {wanted['Subnet']!r}") from None
        if subnet.version != 4:
            raise InvalidParameter("IPv6 networks are not supported by this engine")
        if str(subnet) != wanted["Subnet"]:
            raise InvalidParameter(f"invalid subnet {wanted['Subnet']}: it must be the network address, {subnet}")
        if subnet.prefixlen > 30:
            raise InvalidParameter(f"subnet {subnet} is too small: at most /30")
        self._check_free(subnet)
        config = {"Subnet": str(subnet)}
        gateway = wanted.get("Gateway") or str(next(subnet.hosts()))
        if not _address_in(gateway, subnet):
            raise InvalidParameter(f"gateway {gateway} is not in the subnet {subnet}")
        config["Gateway"] = gateway
        if wanted.get("IPRange"):
            try:
                ip_range = ipaddress.IPv4Network(wanted["IPRange"])
            except ValueError:
                raise InvalidParameter(f"invalid IP range {wanted['IPRange']!r}") from None
            if not ip_range.subnet_of(subnet):
                raise InvalidParameter(f"IP range {ip_range} is not in the subnet {subnet}")
            config["IPRange"] = str(ip_range)
        return config

    def _taken(self) -> list[ipaddress.IPv4Network]:
        ours = [network.subnet for network in self.networks.values() if network.is_bridge and network.IPAM.get("Config")]
        bridges = {network.bridge for network in self.networks.values() if network.bridge}
        return ours + [route for _, route in host_routes(bridges)]

    def _check_free(self, subnet: ipaddress.IPv4Network) -> None:
        for taken in self._taken():
            if subnet.overlaps(taken):
                raise Forbidden(f"Pool overlaps with other one on this address space ({subnet} overlaps {taken})")

    def _allocate(self) -> ipaddress.IPv4Network:
        taken = self._taken()
        for candidate in self.pool.subnets(new_prefix=max(self.pool_prefix, self.pool.prefixlen)):
            if not any(candidate.overlaps(other) for other in taken):
                return candidate
        raise Forbidden(f"could not find an available, non-overlapping IPv4 address pool among the defaults ({self.pool})")

    async def remove(self, ref: str, users: list[str]) -> None:
        """`users`: names of the running containers attached to it (none may be)."""
        network = self.get(ref)
        if not network.user_defined:
            raise Forbidden(f"{network.Name} is a pre-defined network and cannot be removed")
        if users:
            raise Forbidden(f"error while removing network: network {network.Name} id {network.Id} has active endpoints ({', '.join(users)})")
        self.delete_bridge(network)
        for path in (self.ipam_dir / network.Id).glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.ipam_dir / network.Id).rmdir()
        (self.root / f"{network.Id}.json").unlink(missing_ok=True)
        del self.networks[network.Id]

    def delete_bridge(self, network: Network) -> None:
        if network.bridge and Path(f"/sys/class/net/{network.bridge}").exists():
            subprocess.run(["ip", "link", "delete", network.bridge, "type", "bridge"], capture_output=True)

    # -- attachments ---------------------------------------------------------------------------

    def conf(self, network: Network) -> dict[str, Any]:
        """The CNI configuration of the network's bridge."""
        pool = network.IPAM["Config"][0]
        ip_range: dict[str, str] = {"subnet": pool["Subnet"], "gateway": network.gateway}
        if pool.get("IPRange"):
            hosts = ipaddress.IPv4Network(pool["IPRange"])
            ip_range["rangeStart"] = str(hosts.network_address + (1 if hosts.prefixlen < 32 else 0))
            ip_range["rangeEnd"] = str(hosts.broadcast_address - (1 if hosts.prefixlen < 31 else 0))
        ipam: dict[str, Any] = {"type": "host-local", "ranges": [[ip_range]], "dataDir": str(self.ipam_dir)}
        if not network.Internal:
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
        return {"name": network.Id, "type": "bridge", "bridge": network.bridge, "isGateway": not network.Internal,
                "ipMasq": self.ip_masquerade and not network.Internal, "hairpinMode": False, "ipam": ipam}  # fmt: skip

    async def attach(self, network: Network, container_id: str, netns: str, ifname: str, address: str | None = None) -> Endpoint:
        args = ""
        if address:
            if not network.user_defined or not network.IPAM.get("Config"):
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            if not _address_in(address, network.subnet):
                raise InvalidParameter(f"no configured subnet contains IP address {address}")
            args = f"IgnoreUnknown=1;IP={address}"
        result = await cni.run("ADD", self.conf(network), container_id=container_id, netns=netns, ifname=ifname, args=args)
        ips = result.get("ips") or []
        if not ips:
            raise EngineError(f"the bridge plugin gave no address on {network.Name}: {json.dumps(result)}")
        interface = ipaddress.IPv4Interface(ips[0]["address"])
        interfaces = result.get("interfaces") or []
        index = ips[0].get("interface")
        mac = interfaces[index]["mac"] if isinstance(index, int) and index < len(interfaces) else ""
        return Endpoint(network_id=network.Id, endpoint_id=new_id(), ifname=ifname, ip=str(interface.ip),
                        prefix=interface.network.prefixlen, gateway=ips[0].get("gateway") or "", mac=mac)  # fmt: skip

    async def detach(self, network_id: str, container_id: str, netns: str, ifname: str) -> None:
        network = self.networks.get(network_id)
        if network is None:
            return  # removed (with its IPAM entries) meanwhile
        await cni.run("DEL", self.conf(network), container_id=container_id, netns=netns, ifname=ifname)

    def allocated(self) -> dict[str, set[tuple[str, str]]]:
        """(container ID, interface) pairs holding an address, by network ID (host-local's
        files: one per address, holding the container ID and the interface name)."""
        held: dict[str, set[tuple[str, str]]] = {}
        for network_id in self.networks:
            directory = self.ipam_dir / network_id
            if not directory.is_dir():
                continue
            for path in directory.iterdir():
                if path.name.startswith(("last_reserved_ip", "lock")):
                    continue
                with contextlib.suppress(OSError):
                    owner = path.read_text().split()
                    if owner:
                        held.setdefault(network_id, set()).add((owner[0], owner[1] if len(owner) > 1 else "eth0"))
        return held


def _address_in(address: str, subnet: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(address) in subnet
    except ValueError:
        return False


def _matches(network: Network, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "name" and not any(value in network.Name for value in values):
            return False
        if key == "id" and not any(network.Id.startswith(value) for value in values):
            return False
        if key == "driver" and network.Driver not in values:
            return False
        if key == "type":
            kind = "custom" if network.user_defined else "builtin"
            if kind not in values:
                return False
        if key == "scope" and network.Scope not in values:
            return False
        if key == "label":
            for value in values:
                label, equals, wanted = value.partition("=")
                if label not in network.Labels or (equals and network.Labels[label] != wanted):
                    return False
    return True
