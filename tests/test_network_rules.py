"""The network records and address planning (engine.networks), without touching the host:
built-in networks, subnets from the pool, overlap and name rules, the CNI configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.container_config import NotFoundNetwork
from engine.errors import Conflict, InvalidParameter, NotFound
from engine.networks import Forbidden, Networks


def networks(root: Path, **options) -> Networks:
    planned = Networks(root, bridge_name="dyunit0", bridge_subnet="10.250.0.0/24", pool="10.251.0.0/22", **options)
    planned.load()
    return planned


def test_builtin_networks_exist_and_survive_a_reload(tmp_path: Path) -> None:
    first = networks(tmp_path)
    assert {n.Name: n.Driver for n in first.list()} == {"bridge": "bridge", "host": "host", "none": "null"}
    bridge = first.get("bridge")
    assert bridge.bridge == "dyunit0" and bridge.IPAM["Config"] == [{"Subnet": "10.250.0.0/24", "Gateway": "10.250.0.1"}]
    again = networks(tmp_path)
    assert again.get("bridge").Id == bridge.Id and len(again.list()) == 3
    with pytest.raises(Forbidden, match="pre-defined network"):
        asyncio.run(again.remove("bridge", []))


def test_subnets_come_from_the_pool_and_never_overlap(tmp_path: Path) -> None:
    planned = networks(tmp_path)
    made = [planned.create({"Name": f"n{i}"}) for i in range(4)]
    assert [n.IPAM["Config"][0]["Subnet"] for n in made] == ["10.251.0.0/24", "10.251.1.0/24", "10.251.2.0/24", "10.251.3.0/24"]
    with pytest.raises(Forbidden, match="could not find an available"):
        planned.create({"Name": "n4"})
    with pytest.raises(Forbidden, match="Pool overlaps with other one on this address space"):
        planned.create({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.251.1.128/25"}]}})
    with pytest.raises(Forbidden, match="Pool overlaps"):
        planned.create({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.250.0.0/16"}]}})  # the default bridge's
    assert planned.get(made[1].Id[:8]).Name == "n1" and planned.get("n2").Id == made[2].Id
    with pytest.raises(NotFoundNetwork, match="network nope not found"):
        planned.get("nope")


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"Name": "bad name"}, InvalidParameter, "invalid network name"),
        ({"Name": "host"}, Forbidden, "pre-defined network"),
        ({"Name": "o", "Driver": "overlay"}, NotFound, 'plugin "overlay" not found'),
        ({"Name": "o", "EnableIPv6": True}, InvalidParameter, "IPv6"),
        ({"Name": "o", "IPAM": {"Config": [{"Subnet": "10.9.9.1/24"}]}}, InvalidParameter, "must be the network address"),
        ({"Name": "o", "IPAM": {"Config": [{"Subnet": "10.9.9.0/24", "Gateway": "10.9.8.1"}]}}, InvalidParameter, "not in the subnet"),
        ({"Name": "o", "IPAM": {"Config": [{"Subnet": "10.9.9.0/24", "IPRange": "10.9.10.0/25"}]}}, InvalidParameter, "not in the subnet"),
        ({"Name": "o", "IPAM": {"Config": [{"Gateway": "10.9.9.1"}]}}, InvalidParameter, "needs a subnet"),
        ({"Name": "o", "Options": {"com.docker.network.bridge.name": "a-name-far-too-long"}}, InvalidParameter, "invalid bridge name"),
    ],
)
def test_bad_network_requests_are_refused_and_nothing_is_recorded(tmp_path: Path, body: dict, error: type, message: str) -> None:
    planned = networks(tmp_path)
    with pytest.raises(error, match=message):
        planned.create(body)
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_the_cni_configuration_follows_the_network(tmp_path: Path) -> None:
    planned = networks(tmp_path)
    planned.create({"Name": "dup"})
    with pytest.raises(Conflict, match="network with name dup already exists"):
        planned.create({"Name": "dup"})
    ranged = planned.create({"Name": "ranged", "Internal": True,
                             "IPAM": {"Config": [{"Subnet": "10.9.9.0/24", "IPRange": "10.9.9.128/26"}]}})  # fmt: skip
    conf = planned.conf(ranged)
    assert conf["type"] == "bridge" and conf["bridge"] == f"dy-{ranged.Id[:12]}" and conf["name"] == ranged.Id
    assert conf["isGateway"] is False and conf["ipMasq"] is False and "routes" not in conf["ipam"]
    assert conf["ipam"]["ranges"] == [[{"subnet": "10.9.9.0/24", "gateway": "10.9.9.1", "rangeStart": "10.9.9.129", "rangeEnd": "10.9.9.190"}]]
    assert planned.conf(planned.get("bridge"))["ipMasq"] is True
    quiet = networks(tmp_path / "quiet", ip_masquerade=False)
    assert quiet.conf(quiet.get("bridge"))["ipMasq"] is False and quiet.conf(quiet.get("bridge"))["isGateway"] is True
    assert [n.Name for n in planned.list({"type": ["custom"]})] == ["dup", "ranged"]
    assert [n.Name for n in planned.list({"driver": ["null"]})] == ["none"]
