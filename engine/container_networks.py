"""Containers on networks: the sandbox (network namespace, CNI endpoints, published ports) made
at start and torn down at exit, `network connect`/`disconnect`, and the /etc/hosts files that
let containers on a user-defined network reach each other by name.

Name resolution is by /etc/hosts, not an embedded DNS server: each running container's hosts
file (bind-mounted from its directory) lists every other running container that shares a
user-defined network with it, under its name, its aliases on that network and its short ID.
The files are rewritten in place (the bind mount pins the inode) whenever a container joins or
leaves. Any resolver reads /etc/hosts first, busybox's and musl's included; a program that
speaks DNS directly (`nslookup`) does not see these names.

Crash safety: `record.sandbox` is saved as soon as the namespace exists and after each endpoint,
so a daemon killed half-way leaves a record of what to undo; `recover_networks()` tears down
the sandbox of every container not running, and releases any address the IPAM still holds for
a container that is not running (the CNI DEL of a namespace that is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cni, netns, ports
from .errors import EngineError, InvalidParameter
from .networks import Forbidden, Network, Networks
from .portproxy import Forward
from .records import Container, ContainerFiles, EndpointConfig, Sandbox

if TYPE_CHECKING:
    from .containers import Live

log = logging.getLogger("dockyard.engine")

LOOPBACK = {"name": "lo", "type": "loopback"}
OWN_NAMESPACE_MODES = ("host", "none")
Opened = list[tuple[ports.PortBinding, Any]]


def attachments_for_create(host_config: dict[str, Any], networking: dict[str, Any] | None, networks: Networks) -> tuple[str, dict[str, EndpointConfig]]:
    """The network mode and the attachments a create request asks for (checked)."""
    mode = host_config.get("NetworkMode") or "default"
    if mode.startswith("container:"):
        raise InvalidParameter("--network container:<name> is not supported by this engine")
    endpoints = dict(((networking or {}).get("EndpointsConfig")) or {})
    if mode in OWN_NAMESPACE_MODES:
        return mode, {}
    primary = "bridge" if mode == "default" else mode
    with contextlib.suppress(EngineError):
        primary = networks.get(primary).Name  # a network named by ID is kept by name, as Docker shows it
    wanted = {primary: endpoints.pop(mode, None) or endpoints.pop(primary, None) or {}}
    for name, config in endpoints.items():
        with contextlib.suppress(EngineError):
            name = networks.get(name).Name
        wanted[name] = config or {}
    attachments = {}
    for name, config in wanted.items():
        if name in OWN_NAMESPACE_MODES:
            raise InvalidParameter(f"container cannot be connected to {name} and to another network")
        attachment = EndpointConfig.model_validate(config)
        _check_aliases(name, attachment)
        attachments[name] = attachment
    return mode, attachments


def _check_aliases(network_name: str, config: EndpointConfig) -> None:
    if network_name == "bridge" and config.Aliases:
        raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")


def resolv_conf() -> str:
    """The host's resolv.conf without loopback name servers (they mean nothing in the container)."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return ""
    kept = [line for line in lines if not (line.split()[:1] == ["nameserver"] and line.split()[1:2] and
                                            line.split()[1].startswith(("127.", "::1")))]  # fmt: skip
    return "\n".join(kept) + "\n" if kept else ""


class NetworkMixin:
    """The network half of `Containers` (engine.containers)."""

    live: dict[str, Live]
    networks: Networks

    def _save(self, container: Container) -> None: ...  # provided by Containers

    def files(self, container: Container) -> ContainerFiles: ...

    def get(self, ref: str) -> Live: ...

    # -- at start and exit ---------------------------------------------------------------------

    async def _setup_network(self, record: Container, files: ContainerFiles) -> tuple[Opened, list[Forward]]:
        """The container's namespace on its networks and its ports bound; undone on failure."""
        if record.HostConfig.get("NetworkMode") in OWN_NAMESPACE_MODES:
            return [], []
        chosen = [(self.networks.get(name), config) for name, config in record.networks.items()]  # NotFoundNetwork first
        path = files.dir / "netns"
        await netns.create(path)
        record.sandbox = Sandbox(netns=str(path))
        self._save(record)
        opened: Opened = []
        try:
            await cni.run("ADD", LOOPBACK, container_id=record.Id, netns=str(path), ifname="lo")
            for network, config in chosen:
                await self._attach(record, network, config)
            bindings = ports.port_bindings(record.HostConfig, record.Config.get("ExposedPorts"))
            first = next(iter(record.sandbox.endpoints.values()), None)
            opened = ports.bind(bindings, f"{record.name} ({first.endpoint_id if first else record.Id})")
            record.sandbox.ports = ports.bound_ports(opened)
            self._save(record)
            (files.dir / "resolv.conf").write_text(resolv_conf())
            self._refresh_hosts()
        except BaseException:
            ports.close_all(opened)
            await self._teardown_network(record)
            raise
        target = first.ip if first else "127.0.0.1"
        forwards = [Forward(fd=sock.fileno(), protocol=binding.protocol, target_ip=target, target_port=binding.container_port)
                    for binding, sock in opened]  # fmt: skip
        return opened, forwards

    async def _attach(self, record: Container, network: Network, config: EndpointConfig) -> None:
        assert record.sandbox is not None
        used = {endpoint.ifname for endpoint in record.sandbox.endpoints.values()}
        ifname = next(f"eth{n}" for n in range(len(used) + 1) if f"eth{n}" not in used)
        address = (config.IPAMConfig or {}).get("IPv4Address") or None
        endpoint = await self.networks.attach(network, record.Id, record.sandbox.netns, ifname, address)
        record.sandbox.endpoints[network.Name] = endpoint
        config.NetworkID = network.Id
        self._save(record)

    async def _teardown_network(self, record: Container) -> None:
        sandbox = record.sandbox
        if sandbox is None:
            return
        for name, endpoint in list(sandbox.endpoints.items()):
            try:
                await self.networks.detach(endpoint.network_id, record.Id, sandbox.netns, endpoint.ifname)
            except EngineError as error:
                log.warning("container %s: leaving %s: %s", record.short_id, name, error.message)
        await asyncio.to_thread(netns.remove, Path(sandbox.netns))
        record.sandbox = None
        self._save(record)
        self._refresh_hosts()

    # -- connect and disconnect ----------------------------------------------------------------

    async def connect(self, ref: str, network_ref: str, endpoint_config: dict[str, Any] | None) -> None:
        live = self.get(ref)
        network = self.networks.get(network_ref)
        async with live.lock:
            record = live.record
            mode = record.HostConfig.get("NetworkMode")
            if mode == "host" or network.Name == "host":
                raise Forbidden("container cannot be disconnected from host network or connected to host network")
            if mode == "none" or network.Name == "none":
                raise Forbidden("container cannot be connected to multiple networks with one of the networks in private (none) mode")
            if network.Name in record.networks:
                raise Forbidden(f"endpoint with name {record.name} already exists in network {network.Name}")
            config = EndpointConfig.model_validate(endpoint_config or {})
            _check_aliases(network.Name, config)
            if record.sandbox is not None and record.State.Running:
                await self._attach(record, network, config)
            record.networks[network.Name] = config
            self._save(record)
            self._refresh_hosts()

    async def disconnect(self, ref: str, network_ref: str, force: bool = False) -> None:
        live = self.get(ref)
        network = self.networks.get(network_ref)
        async with live.lock:
            record = live.record
            if network.Name not in record.networks:
                if record.HostConfig.get("NetworkMode") == network.Name == "host":
                    raise Forbidden("container cannot be disconnected from host network or connected to host network")
                raise Forbidden(f"container {record.Id} is not connected to network {network.Name}")
            endpoint = record.sandbox.endpoints.get(network.Name) if record.sandbox else None
            if endpoint is not None and record.sandbox is not None:
                try:
                    await self.networks.detach(endpoint.network_id, record.Id, record.sandbox.netns, endpoint.ifname)
                except EngineError:
                    if not force:
                        raise
                del record.sandbox.endpoints[network.Name]
            del record.networks[network.Name]
            self._save(record)
            self._refresh_hosts()

    def network_users(self, network: Network) -> list[Container]:
        """The running containers with an endpoint on `network`."""
        return [live.record for live in self.live.values()
                if live.record.sandbox and any(e.network_id == network.Id for e in live.record.sandbox.endpoints.values())]  # fmt: skip

    # -- hosts files ---------------------------------------------------------------------------

    def hosts_text(self, record: Container) -> str:
        hostname = record.Config.get("Hostname") or record.short_id
        mode = record.HostConfig.get("NetworkMode")
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        endpoints = record.sandbox.endpoints if record.sandbox else {}
        if endpoints:
            lines.append(f"{next(iter(endpoints.values())).ip}\t{hostname}")
        elif mode != "host":
            lines.append(f"127.0.1.1\t{hostname}")
        for extra in record.HostConfig.get("ExtraHosts") or []:
            host, _, address = extra.partition(":")
            lines.append(f"{address}\t{host}")
        for name, endpoint in endpoints.items():
            network = self.networks.networks.get(endpoint.network_id)
            if network is None or not network.user_defined:
                continue  # the default bridge resolves no names, as in Docker
            for peer in self.network_users(network):
                if peer.Id == record.Id or peer.sandbox is None:
                    continue
                peer_endpoint = peer.sandbox.endpoints.get(name)
                if peer_endpoint is None:
                    continue
                config = peer.networks.get(name) or EndpointConfig()
                names = dict.fromkeys([peer.name, *(config.Aliases or []), peer.short_id])
                lines.append(f"{peer_endpoint.ip}\t{' '.join(names)}")
        return "\n".join(lines) + "\n"

    def _refresh_hosts(self) -> None:
        for live in self.live.values():
            record = live.record
            if record.sandbox is None:
                continue
            path = self.files(record).dir / "hosts"
            text = self.hosts_text(record)
            with contextlib.suppress(OSError):
                if path.read_text() == text:
                    continue
            with contextlib.suppress(OSError), open(path, "w") as out:  # in place: the bind mount holds the inode
                out.write(text)

    # -- daemon start and stop -----------------------------------------------------------------

    async def recover_networks(self) -> None:
        running = {live.record.Id for live in self.live.values() if live.record.State.Running}
        for live in list(self.live.values()):
            if live.record.sandbox is not None and live.record.Id not in running:
                await self._teardown_network(live.record)
        for network_id, holders in self.networks.allocated().items():
            for container_id, ifname in holders:
                if container_id not in running:
                    with contextlib.suppress(EngineError):
                        await self.networks.detach(network_id, container_id, "", ifname)
        self._refresh_hosts()

    def release_idle_bridges(self) -> None:
        """At daemon stop: bridges no running container uses go (CNI makes them again)."""
        for network in self.networks.networks.values():
            if network.is_bridge and not self.network_users(network):
                self.networks.delete_bridge(network)
