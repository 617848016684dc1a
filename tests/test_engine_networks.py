"""Bridge networks and published ports on a real dockyardd, driven by the stock docker CLI and
docker-py: containers on a user network reach each other by name and alias, a published port
serves the host on 127.0.0.1, and every namespace, veth, address and bridge goes when its
container or network does, also across a daemon killed with -9. Only addresses of the
bridges the daemon makes (10.231.N.0/24 and 10.232.0.0/16 in the tests) and loopback are used."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import free_port
from tests.engine import Daemon, engine_world

IMAGE = "busybox:networks"
SERVE = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with engine_world(tmp_path_factory.mktemp("engine-networks"), IMAGE) as (daemon, _, _):
        yield daemon


def inspect(daemon: Daemon, kind: str, name: str) -> dict:
    return json.loads(daemon.docker(kind, "inspect", name, check=True).stdout)[0]


def fetch(port: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def veths() -> set[str]:
    return {path.name for path in Path("/sys/class/net").iterdir() if path.name.startswith("veth")}


def test_containers_on_a_user_network_reach_each_other_by_name_and_serve_a_published_port(daemon: Daemon) -> None:
    before = veths()
    daemon.docker("network", "create", "--label", "app=shop", "shop", check=True)
    network = inspect(daemon, "network", "shop")
    subnet = network["IPAM"]["Config"][0]["Subnet"]
    assert network["Driver"] == "bridge" and network["Labels"] == {"app": "shop"} and subnet.startswith("10.232.")
    port = free_port()
    daemon.docker("run", "-d", "--name", "web", "--network", "shop", "--network-alias", "www", "-p", f"127.0.0.1:{port}:80",
                  IMAGE, "sh", "-c", SERVE, check=True)  # fmt: skip
    web = inspect(daemon, "container", "web")
    address = web["NetworkSettings"]["Networks"]["shop"]["IPAddress"]
    assert address.startswith(subnet.rsplit(".", 1)[0]) and web["NetworkSettings"]["Networks"]["shop"]["Aliases"] == ["www"]
    assert web["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert fetch(port) == f"hello from {web['Config']['Hostname']}\n"
    assert daemon.docker("port", "web", check=True).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    members = inspect(daemon, "network", "shop")["Containers"]
    assert members[web["Id"]]["Name"] == "web" and members[web["Id"]]["IPv4Address"] == f"{address}/24"
    # by name, by alias, and by short ID from another container on the network
    for host in ("web", "www", web["Id"][:12]):
        got = daemon.docker("run", "--rm", "--network", "shop", IMAGE, "wget", "-q", "-O", "-", f"http://{host}/", check=True)
        assert got.stdout.startswith("hello from")
    # the default bridge gives an address and a route, but resolves no names (as Docker's)
    outside = daemon.docker("run", "--rm", IMAGE, "sh", "-c", "ip -4 addr show eth0; ip route; wget -q -T 3 -O - http://web/")
    assert "inet 10.231." in outside.stdout and "default via 10.231." in outside.stdout and outside.returncode != 0
    # a port taken is an error before the container starts, and nothing is left half-made
    busy = daemon.docker("run", "-d", "--name", "second", "-p", f"127.0.0.1:{port}:80", IMAGE, "sleep", "60")
    assert busy.returncode != 0 and f"Bind for 127.0.0.1:{port} failed: port is already allocated" in busy.stderr
    second = inspect(daemon, "container", "second")
    assert second["State"]["Running"] is False and second["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    assert not (daemon.root / "containers" / second["Id"] / "netns").exists()
    daemon.docker("rm", "second", check=True)
    # stopped: the port is free and the address released; the network goes with its bridge
    daemon.docker("stop", "-t", "1", "web", check=True)
    assert refused(port)
    assert inspect(daemon, "network", "shop")["Containers"] == {}
    assert veths() == before
    daemon.docker("rm", "web", check=True)
    bridge = f"dy-{network['Id'][:12]}"
    assert Path(f"/sys/class/net/{bridge}").exists()
    daemon.docker("network", "rm", "shop", check=True)
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert "shop" not in daemon.docker("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()


def test_connect_and_disconnect_a_running_container(daemon: Daemon) -> None:
    daemon.docker("network", "create", "backend", check=True)
    daemon.docker("run", "-d", "--name", "api", "--network", "backend", IMAGE, "sh", "-c", SERVE, check=True)
    daemon.docker("run", "-d", "--name", "client", IMAGE, "sleep", "600", check=True)
    try:
        assert daemon.docker("exec", "client", "wget", "-q", "-T", "3", "-O", "-", "http://api/").returncode != 0
        daemon.docker("network", "connect", "--alias", "svc", "backend", "client", check=True)
        client = inspect(daemon, "container", "client")
        assert set(client["NetworkSettings"]["Networks"]) == {"bridge", "backend"}
        assert daemon.docker("exec", "client", "wget", "-q", "-O", "-", "http://api/", check=True).stdout.startswith("hello from")
        hosts = daemon.docker("exec", "api", "cat", "/etc/hosts", check=True).stdout
        assert any(line.split()[1:] == ["client", "svc", client["Id"][:12]] for line in hosts.splitlines() if line.strip())
        busy = daemon.docker("network", "rm", "backend")
        assert busy.returncode != 0 and "has active endpoints" in busy.stderr
        daemon.docker("network", "disconnect", "backend", "client", check=True)
        assert set(inspect(daemon, "container", "client")["NetworkSettings"]["Networks"]) == {"bridge"}
        assert "client" not in daemon.docker("exec", "api", "cat", "/etc/hosts", check=True).stdout
        twice = daemon.docker("network", "disconnect", "backend", "client")
        assert twice.returncode != 0 and "is not connected to network backend" in twice.stderr
    finally:
        daemon.docker("rm", "-f", "api", "client", check=True)
        daemon.docker("network", "rm", "backend", check=True)


def test_bad_network_input_is_refused_and_leaves_nothing(daemon: Daemon) -> None:
    daemon.docker("network", "create", "--subnet", "10.232.200.0/24", "fixed", check=True)
    try:
        overlap = daemon.docker("network", "create", "--subnet", "10.232.200.128/25", "overlapping")
        assert overlap.returncode != 0 and "Pool overlaps with other one on this address space" in overlap.stderr
        again = daemon.docker("network", "create", "fixed")
        assert again.returncode != 0 and "network with name fixed already exists" in again.stderr
        bad = daemon.docker("network", "create", "--subnet", "10.232.300.0/24", "badsubnet")
        assert bad.returncode != 0 and "invalid" in bad.stderr.lower()
        predefined = daemon.docker("network", "rm", "bridge")
        assert predefined.returncode != 0 and "pre-defined network" in predefined.stderr
        unknown = daemon.docker("run", "--name", "lost", "--network", "nowhere", IMAGE, "true")
        assert unknown.returncode != 0 and "network nowhere not found" in unknown.stderr
        daemon.docker("rm", "-f", "lost")
        invalid_port = daemon.docker("run", "--rm", "-p", "127.0.0.1:99999:80", IMAGE, "true")
        assert invalid_port.returncode != 0 and "99999" in invalid_port.stderr
        fixed_ip = daemon.docker("run", "--rm", "--network", "fixed", "--ip", "10.232.200.77", IMAGE, "ip", "-4", "addr", "show", "eth0", check=True)
        assert "inet 10.232.200.77/24" in fixed_ip.stdout
        names = set(daemon.docker("network", "ls", "--format", "{{.Name}}", check=True).stdout.split())
        assert names == {"bridge", "host", "none", "fixed"}
    finally:
        daemon.docker("network", "rm", "fixed", check=True)
    with contextlib.closing(docker.DockerClient(base_url=daemon.host, version="1.43")) as client:
        with pytest.raises(docker.errors.APIError) as error:
            client.api.create_container(IMAGE, "true", host_config=client.api.create_host_config(port_bindings={"80/sctp": 8080}))
        assert error.value.status_code == 400 and "invalid protocol" in str(error.value)
        with pytest.raises(docker.errors.APIError) as error:  # the CLI checks this itself; the daemon too
            client.api.create_container(IMAGE, "true", networking_config=client.api.create_networking_config(
                {"bridge": client.api.create_endpoint_config(aliases=["x"])}))  # fmt: skip
        assert error.value.status_code == 400 and "supported only for containers in user defined networks" in str(error.value)


def test_docker_py_publishes_all_exposed_ports_and_they_close_with_the_container(daemon: Daemon) -> None:
    with contextlib.closing(docker.DockerClient(base_url=daemon.host, version="1.43")) as client:
        network = client.networks.create("pyapp", labels={"from": "docker-py"})
        container = client.containers.run(IMAGE, ["sh", "-c", SERVE], detach=True, network="pyapp", ports={"80/tcp": ("127.0.0.1", None)})
        try:
            container.reload()
            binding = container.ports["80/tcp"][0]
            assert binding["HostIp"] == "127.0.0.1" and fetch(int(binding["HostPort"])).startswith("hello from")
            network.reload()
            assert [c.name for c in network.containers] == [container.name]
            assert [n.name for n in client.networks.list(filters={"label": "from=docker-py"})] == ["pyapp"]
        finally:
            container.remove(force=True)
        assert refused(int(binding["HostPort"]))
        network.remove()


def test_networking_survives_a_daemon_killed_with_9_and_what_ended_meanwhile_is_cleaned(daemon: Daemon) -> None:
    daemon.docker("network", "create", "durable", check=True)
    port = free_port()
    daemon.docker("run", "-d", "--name", "keeper", "--network", "durable", "-p", f"127.0.0.1:{port}:80", IMAGE, "sh", "-c", SERVE, check=True)
    daemon.docker("run", "-d", "--name", "brief", "--network", "durable", IMAGE, "sleep", "2", check=True)
    brief = inspect(daemon, "container", "brief")
    brief_address = brief["NetworkSettings"]["Networks"]["durable"]["IPAddress"]
    assert fetch(port).startswith("hello from")
    before = veths()
    daemon.kill9()
    time.sleep(3)  # `brief` exits while no daemon watches
    assert fetch(port).startswith("hello from")  # the shim keeps serving the port
    daemon.restart()
    assert inspect(daemon, "container", "brief")["State"]["Status"] == "exited"
    assert not (daemon.root / "containers" / brief["Id"] / "netns").exists()
    assert len(veths()) == len(before) - 1
    network = inspect(daemon, "network", "durable")
    held = [path.name for path in (daemon.root / "networks" / "ipam" / network["Id"]).iterdir()]
    assert brief_address not in held and inspect(daemon, "container", "keeper")["NetworkSettings"]["Networks"]["durable"]["IPAddress"] in held
    assert fetch(port).startswith("hello from")
    assert daemon.docker("run", "--rm", "--network", "durable", IMAGE, "wget", "-q", "-O", "-", "http://keeper/", check=True).stdout
    daemon.docker("rm", "-f", "keeper", "brief", check=True)
    assert refused(port)
    daemon.docker("network", "rm", "durable", check=True)


def test_the_dockyard_cli_manages_networks_and_publishes_ports(daemon: Daemon) -> None:
    created = daemon.dockyard("network", "create", "--subnet", "10.232.210.0/24", "--label", "by=dockyard", "clinet")
    assert created.returncode == 0, created.stderr
    listed = daemon.dockyard("network", "ls", "-f", "label=by=dockyard")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["clinet"]
    port = free_port()
    run = daemon.dockyard("run", "-d", "--name", "cliweb", "--network", "clinet", "--network-alias", "front", "--ip", "10.232.210.9",
                          "-p", f"127.0.0.1:{port}:80", "--expose", "443", IMAGE, "sh", "-c", SERVE)  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:
        assert fetch(port).startswith("hello from")
        assert daemon.dockyard("port", "cliweb").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
        assert daemon.dockyard("port", "cliweb", "80").stdout == f"127.0.0.1:{port}\n"
        missing = daemon.dockyard("port", "cliweb", "443")
        assert missing.returncode != 0 and "No public port '443/tcp' published for cliweb" in missing.stderr
        ps = daemon.dockyard("ps", "-f", "name=cliweb").stdout
        assert f"127.0.0.1:{port}->80/tcp, 443/tcp" in ps
        got = daemon.dockyard("run", "--rm", "--network", "clinet", IMAGE, "wget", "-q", "-O", "-", "http://front/")
        assert got.returncode == 0 and got.stdout.startswith("hello from")
        shown = json.loads(daemon.dockyard("network", "inspect", "clinet").stdout)[0]
        assert [c["IPv4Address"] for c in shown["Containers"].values()] == ["10.232.210.9/24"]
        bad = daemon.dockyard("run", "--rm", "-p", "127.0.0.1:8080:80/sctp", IMAGE, "true")
        assert bad.returncode == 2 and "invalid protocol 'sctp'" in bad.stderr
    finally:
        daemon.dockyard("rm", "-f", "cliweb")
    assert daemon.dockyard("network", "rm", "clinet").returncode == 0
    assert "clinet" not in daemon.dockyard("network", "ls").stdout


COMPOSE_FILE = """
version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && cp /data/index.html /www/ 2>/dev/null || echo served by web > /www/index.html; exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["content:/data"]
  caller:
    image: {image}
    command: ["sh", "-c", "until wget -q -O /data/fetched http://web/; do sleep 0.2; done; cat /data/fetched; exec sleep 600"]
    depends_on: [web]
    volumes: ["content:/data"]
volumes:
  content: {{}}
"""


def test_docker_compose_runs_a_two_service_app_and_down_v_leaves_nothing(daemon: Daemon, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(image=IMAGE, port=port))

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "--no-ansi", "-p", "shop", *args], cwd=tmp_path, env=daemon.env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip

    before = veths()
    up = compose("up", "-d")
    assert up.returncode == 0, up.stderr
    try:
        assert fetch(port) == "served by web\n"
        deadline = time.monotonic() + 20
        while "served by web" not in (logs := compose("logs", "caller").stdout) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "served by web" in logs
        ps = compose("ps")
        assert ps.returncode == 0 and "shop_web_1" in ps.stdout and "shop_caller_1" in ps.stdout
        assert f"127.0.0.1:{port}->80/tcp" in ps.stdout and ps.stdout.count(" Up ") == 2
        network = inspect(daemon, "network", "shop_default")
        assert network["Labels"]["com.docker.compose.project"] == "shop" and len(network["Containers"]) == 2
        assert inspect(daemon, "volume", "shop_content")["Labels"]["com.docker.compose.volume"] == "content"
        # the caller wrote into the shared volume what it fetched from the web service by name
        assert daemon.docker("exec", "shop_web_1", "cat", "/data/fetched", check=True).stdout == "served by web\n"
    finally:
        down = compose("down", "-v", "-t", "1")
    assert down.returncode == 0, down.stderr
    assert daemon.docker("ps", "-aq", check=True).stdout == ""
    assert "shop_default" not in daemon.docker("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
    assert "shop_content" not in daemon.docker("volume", "ls", "-q", check=True).stdout.split()
    assert refused(port) and veths() == before


def test_publish_all_gives_each_exposed_port_a_free_host_port(daemon: Daemon) -> None:
    daemon.docker("create", "--name", "expose-base", IMAGE, "true", check=True)
    daemon.docker("commit", "--change", "EXPOSE 80/tcp", "expose-base", "busybox:exposed", check=True)
    daemon.docker("rm", "expose-base", check=True)
    daemon.docker("run", "-d", "--name", "published", "-P", "busybox:exposed", "sh", "-c", SERVE, check=True)
    try:
        bindings = inspect(daemon, "container", "published")["NetworkSettings"]["Ports"]["80/tcp"]
        assert len(bindings) == 1 and bindings[0]["HostIp"] == "0.0.0.0" and int(bindings[0]["HostPort"]) > 0
        assert fetch(int(bindings[0]["HostPort"])).startswith("hello from")
        assert daemon.docker("port", "published", "80", check=True).stdout.strip() == f"0.0.0.0:{bindings[0]['HostPort']}"
    finally:
        daemon.docker("rm", "-f", "published", check=True)
        daemon.docker("rmi", "busybox:exposed", check=True)
