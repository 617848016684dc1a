"""The seed walkthrough, verbatim, against a real dockyardd: an image pulled from a Dockyard
registry, a container typed into on a real pty, two commits, inspect, rmi, rm -- with the stock
docker CLI, with docker-py, and with `dockyard`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import Daemon, Pty, engine_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    with engine_world(tmp_path_factory.mktemp("engine-walkthrough")) as (daemon, _, reference):
        yield daemon, reference


def layers(daemon: Daemon, image: str) -> list[str]:
    result = daemon.docker("inspect", "--type", "image", image, check=True)
    return json.loads(result.stdout)[0]["RootFS"]["Layers"]


def test_seed_walkthrough_with_the_stock_docker_cli(world: tuple[Daemon, str]) -> None:
    daemon, reference = world
    pulled = daemon.docker("pull", reference, check=True)
    assert "Downloaded newer image" in pulled.stdout
    daemon.docker("tag", reference, "ubuntu:14.04", check=True)
    base_layers = layers(daemon, "ubuntu:14.04")
    assert len(base_layers) == 3

    session = Pty(["docker", "run", "-i", "-t", "--name", "commit_test", "ubuntu:14.04"], daemon.env)
    session.expect(b"# ")
    session.type("echo test_first!! >> first\r")
    session.type("cat first\r")
    session.expect(b"test_first!!\r\n")
    session.type("exit\r")
    assert session.wait() == 0

    committed = daemon.docker("commit", "-a", "author", "-m", "commit_message", "commit_test", "commit_test:first", check=True)
    first_id = committed.stdout.strip()
    assert first_id.startswith("sha256:")
    first = json.loads(daemon.docker("inspect", "commit_test:first", check=True).stdout)[0]
    assert first["Author"] == "author" and first["Comment"] == "commit_message"
    assert first["RootFS"]["Layers"][:3] == base_layers and len(first["RootFS"]["Layers"]) == 4

    daemon.docker("run", "--name", "commit_test2", "commit_test:first", "sh", "-c", "echo test_second > second", check=True)
    daemon.docker("commit", "commit_test2", "commit_test:second", check=True)
    second_layers = layers(daemon, "commit_test:second")
    assert second_layers[:4] == first["RootFS"]["Layers"] and len(second_layers) == 5

    refused = daemon.docker("rmi", "commit_test:first")
    assert refused.returncode == 1
    assert "container" in refused.stderr and "is using its referenced image" in refused.stderr
    daemon.docker("rm", "commit_test2", check=True)
    removed = daemon.docker("rmi", "commit_test:first", check=True)
    assert removed.stdout == "Untagged: commit_test:first\n"
    # nothing was deleted: the image stays as the parent of commit_test:second
    assert daemon.docker("inspect", "--type", "image", first_id).returncode == 0

    shown = daemon.docker("run", "--rm", "commit_test:second", "cat", "first", "second", check=True)
    assert shown.stdout == "test_first!!\ntest_second\n"
    daemon.docker("rm", "commit_test", check=True)


def test_seed_walkthrough_with_docker_py(world: tuple[Daemon, str]) -> None:
    import docker

    daemon, reference = world
    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        client.images.pull(reference)
        client.images.get(reference).tag("py-ubuntu", "14.04")
        base = client.images.get("py-ubuntu:14.04")
        first_container = client.containers.run("py-ubuntu:14.04", ["sh", "-c", "echo test_first!! >> first"], name="py_commit_test")
        assert first_container == b""
        container = client.containers.get("py_commit_test")
        first = container.commit("py_commit_test", "first", author="author", message="commit_message")
        assert first.attrs["RootFS"]["Layers"][:3] == base.attrs["RootFS"]["Layers"]
        second_container = client.containers.create("py_commit_test:first", ["sh", "-c", "echo test_second > second"], name="py_commit_test2")
        second_container.start()
        assert second_container.wait()["StatusCode"] == 0
        second = second_container.commit("py_commit_test", "second")
        assert second.attrs["RootFS"]["Layers"][:4] == first.attrs["RootFS"]["Layers"]
        with pytest.raises(docker.errors.APIError) as refused:
            client.images.remove("py_commit_test:first")
        assert refused.value.status_code == 409
        second_container.remove()
        client.images.remove("py_commit_test:first")
        assert client.images.get(first.id).id == first.id  # untagged, kept as a parent
        out = client.containers.run("py_commit_test:second", ["cat", "first", "second"], remove=True)
        assert out == b"test_first!!\ntest_second\n"
        container.remove()
    finally:
        client.close()


def test_seed_walkthrough_with_dockyard(world: tuple[Daemon, str]) -> None:
    import sys

    daemon, reference = world
    dockyard = [sys.executable, "-m", "client.cli"]
    assert daemon.dockyard("pull", reference).returncode == 0
    assert daemon.dockyard("tag", reference, "dy-ubuntu:14.04").returncode == 0
    base_layers = layers(daemon, "dy-ubuntu:14.04")

    session = Pty([*dockyard, "run", "-i", "-t", "--name", "dy_commit_test", "dy-ubuntu:14.04"], daemon.env)
    session.expect(b"# ")
    session.type("echo test_first!! >> first; stty size\r")
    session.expect(b"24 80\r\n")
    session.type("exit\r")
    assert session.wait() == 0

    first_id = daemon.dockyard("commit", "-a", "author", "-m", "commit_message", "dy_commit_test", "dy_commit_test:first")
    assert first_id.returncode == 0 and first_id.stdout.startswith("sha256:")
    first_layers = layers(daemon, "dy_commit_test:first")
    assert first_layers[:3] == base_layers and len(first_layers) == 4
    second = daemon.dockyard("run", "--name", "dy_commit_test2", "dy_commit_test:first", "sh", "-c", "echo test_second > second")
    assert second.returncode == 0, second.stderr
    assert daemon.dockyard("commit", "dy_commit_test2", "dy_commit_test:second").returncode == 0
    assert layers(daemon, "dy_commit_test:second")[:4] == first_layers

    inspected = json.loads(daemon.dockyard("inspect", "dy_commit_test:first").stdout)[0]
    assert inspected["Author"] == "author" and inspected["RootFS"]["Layers"] == first_layers
    refused = daemon.dockyard("rmi", "dy_commit_test:first")
    assert refused.returncode == 1 and "is using its referenced image" in refused.stderr
    assert daemon.dockyard("rm", "dy_commit_test2").stdout == "dy_commit_test2\n"
    removed = daemon.dockyard("rmi", "dy_commit_test:first")
    assert removed.returncode == 0 and removed.stdout == "Untagged: dy_commit_test:first\n"
    shown = daemon.dockyard("run", "--rm", "dy_commit_test:second", "cat", "first", "second")
    assert shown.returncode == 0 and shown.stdout == "test_first!!\ntest_second\n"
    listed = daemon.dockyard("ps", "-a").stdout.splitlines()
    assert listed[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"] and any("dy_commit_test" in line for line in listed[1:])
    assert daemon.dockyard("rm", "dy_commit_test").returncode == 0


def test_dockyard_without_a_daemon_names_the_socket(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "nobody-listens.sock"
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "-H", f"unix://{missing}", "ps"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == f"Error: Cannot connect to the Dockyard daemon at unix://{missing}. Is dockyardd running? (No such file or directory)\n"


def test_dockyard_lifecycle_verbs(world: tuple[Daemon, str], tmp_path: Path) -> None:
    daemon, reference = world
    assert daemon.dockyard("pull", "-q", reference).returncode == 0
    created = daemon.dockyard("create", "--name", "dy-life", "-e", "WHO=dockyard", reference, "sh", "-c",
                              "trap 'echo bye; exit 0' TERM; echo hello $WHO; echo oops >&2; while true; do sleep 0.1; done")  # fmt: skip
    assert created.returncode == 0 and len(created.stdout.strip()) == 64
    assert daemon.dockyard("start", "dy-life").stdout == "dy-life\n"
    assert daemon.dockyard("ps", "-q").stdout.split() == [created.stdout.strip()[:12]]
    for _ in range(100):
        logs = daemon.dockyard("logs", "dy-life")
        if logs.stdout:
            break
    assert logs.stdout == "hello dockyard\n" and logs.stderr == "oops\n"
    assert daemon.dockyard("exec", "dy-life", "sh", "-c", "exit 4").returncode == 4
    piped = daemon.dockyard("exec", "-i", "dy-life", "cat", input=b"through exec\n")
    assert piped.stdout == "through exec\n"
    assert daemon.dockyard("stop", "-t", "5", "dy-life").stdout == "dy-life\n"
    assert daemon.dockyard("wait", "dy-life").stdout == "0\n"
    assert "bye" in daemon.dockyard("logs", "--tail", "1", "dy-life").stdout
    assert daemon.dockyard("restart", "dy-life").returncode == 0
    assert daemon.dockyard("kill", "-s", "KILL", "dy-life").returncode == 0
    assert daemon.dockyard("wait", "dy-life").stdout == "137\n"
    assert daemon.dockyard("kill", "dy-life").returncode == 1  # not running: an error line, status 1
    assert daemon.dockyard("rm", "dy-life").returncode == 0

    daemon.dockyard("run", "-d", "-i", "--name", "dy-attach", reference, "sh", "-c", "read line; echo got $line; exit 3")
    attached = daemon.dockyard("attach", "dy-attach", input=b"hi\n")
    assert attached.returncode == 3 and attached.stdout == "got hi\n"
    assert daemon.dockyard("rm", "dy-attach").returncode == 0
    unknown = daemon.dockyard("stop", "no-such-container")
    assert unknown.returncode == 1 and unknown.stderr == "Error: No such container: no-such-container\n"
