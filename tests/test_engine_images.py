"""Images through a real dockyardd: what a commit's layer holds, push/pull/save/load/import/search
through the daemon, run of an image not present, and holds that every process's rmi respects."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.store import ImageStore
from tests.conftest import RegistryProcess
from tests.engine import Daemon, Pty, engine_world

IMAGE = "busybox:images"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, RegistryProcess, str]]:
    with engine_world(tmp_path_factory.mktemp("engine-images"), IMAGE) as world:
        yield world


def top_layer_members(daemon: Daemon, image: str) -> dict[str, tarfile.TarInfo]:
    """The entries of `image`'s top layer, read from the daemon's store."""
    store = ImageStore(daemon.root / "images")
    image_id = daemon.docker("inspect", "-f", "{{.Id}}", image, check=True).stdout.strip()
    record = store.resolve(image_id)
    blob = store.blob_path(record.layers[-1].digest).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as archive:
        return {member.name: member for member in archive.getmembers()}


def test_commit_layer_holds_exactly_the_changes_with_whiteouts_and_opaque_dirs(world) -> None:
    daemon, _, _ = world
    script = (
        "echo new > /added.txt; rm /etc/dockyard/greeting.txt; "
        "rm -rf /usr/share/dockyard; mkdir /usr/share/dockyard; echo fresh > /usr/share/dockyard/only.txt; "
        "echo changed >> /etc/passwd"
    )
    daemon.docker("run", "--name", "changer", "-v", "/tmp:/hostmnt", IMAGE, "sh", "-c", script, check=True)
    daemon.docker("commit", "-c", 'CMD ["cat", "/added.txt"]', "-c", "ENV STAGE=committed", "changer", "changed:1", check=True)
    members = top_layer_members(daemon, "changed:1")
    names = set(members)
    assert "added.txt" in names and "etc/passwd" in names
    assert "etc/dockyard/.wh.greeting.txt" in names
    assert "usr/share/dockyard/.wh..wh..opq" in names and "usr/share/dockyard/only.txt" in names
    # runc's mount points and Docker's bind-mounted files never reach a commit; nor do overlay xattrs
    for absent in ("etc/hosts", "etc/hostname", "etc/resolv.conf", "dev", "proc", "sys", ".dockerenv"):
        assert absent not in names, absent
    assert all(not key.startswith("SCHILY.xattr.trusted.overlay") for member in members.values() for key in member.pax_headers)
    # the image runs with the changes applied, and --change set its config
    assert daemon.docker("run", "--rm", "changed:1", check=True).stdout == "new\n"
    shown = daemon.docker("run", "--rm", "changed:1", "sh", "-c",
                          "ls /usr/share/dockyard; test -e /etc/dockyard/greeting.txt || echo gone; echo $STAGE", check=True)  # fmt: skip
    assert shown.stdout == "only.txt\ngone\ncommitted\n"
    history = json.loads(daemon.docker("image", "history", "--format", "{{json .}}", "--no-trunc", "changed:1", check=True).stdout.splitlines()[0])
    assert history["CreatedBy"].startswith("sh -c echo new")
    daemon.docker("rm", "changer", check=True)


def test_commit_of_a_running_container_pauses_it_and_keeps_it_running(world) -> None:
    daemon, _, _ = world
    daemon.docker("run", "-d", "--name", "busy", IMAGE, "sh", "-c", "echo running > /state; sleep 1000", check=True)
    time.sleep(0.5)
    daemon.docker("commit", "busy", "busy-snapshot:1", check=True)
    assert json.loads(daemon.docker("inspect", "busy", check=True).stdout)[0]["State"]["Status"] == "running"
    assert daemon.docker("run", "--rm", "busy-snapshot:1", "cat", "/state", check=True).stdout == "running\n"
    daemon.docker("rm", "-f", "busy", check=True)


def test_a_committed_image_pushes_and_pulls_back(world) -> None:
    daemon, registry, _ = world
    daemon.docker("run", "--name", "to-push", IMAGE, "sh", "-c", "echo pushed > /payload", check=True)
    target = f"127.0.0.1:{registry.port}/acme/pushed:1"
    daemon.docker("commit", "to-push", target, check=True)
    pushed = daemon.docker("push", target, check=True)
    assert "digest: sha256:" in pushed.stdout
    daemon.docker("rm", "to-push", check=True)
    daemon.docker("rmi", target, check=True)
    assert daemon.docker("inspect", "--type", "image", target).returncode == 1
    # `run` of an image the daemon lacks pulls it first, as docker does
    ran = daemon.docker("run", "--rm", target, "cat", "/payload")
    assert ran.returncode == 0 and ran.stdout == "pushed\n"
    assert f"Unable to find image '{target}' locally" in ran.stderr
    found = daemon.docker("search", f"127.0.0.1:{registry.port}/pushed", check=True)
    assert "acme/pushed" in found.stdout


def test_save_load_and_import_through_the_daemon(world, tmp_path: Path) -> None:
    daemon, _, _ = world
    archive = tmp_path / "saved.tar"
    daemon.docker("save", "-o", str(archive), IMAGE, check=True)
    with tarfile.open(archive) as saved:
        manifest = json.loads(saved.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == [IMAGE] and len(manifest[0]["Layers"]) == 3
    daemon.docker("tag", IMAGE, "reloaded:1", check=True)
    daemon.docker("rmi", "reloaded:1", check=True)
    loaded = daemon.docker("load", "-i", str(archive), check=True)
    assert f"Loaded image: {IMAGE}" in loaded.stdout

    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for member in ("bin/busybox",):
            tar.add("/usr/bin/busybox", member)
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        note = b"imported\n"
        info = tarfile.TarInfo("note.txt")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    imported = daemon.docker("import", "-c", 'CMD ["/bin/sh", "-c", "cat /note.txt"]', str(rootfs), "imported:1", check=True)
    assert imported.stdout.startswith("sha256:")
    assert daemon.docker("run", "--rm", "imported:1", check=True).stdout == "imported\n"


def test_images_lists_docker_columns_with_unpacked_sizes(world) -> None:
    from tests.images import BUSYBOX

    daemon, _, _ = world
    header = daemon.docker("images", check=True).stdout.splitlines()[0]
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    listed = json.loads(daemon.docker("image", "ls", "--format", "{{json .}}", IMAGE, check=True).stdout)
    assert listed["Repository"] == IMAGE.split(":")[0] and listed["Tag"] == IMAGE.split(":")[1]
    size = json.loads(daemon.docker("inspect", IMAGE, check=True).stdout)[0]["Size"]
    assert size > BUSYBOX.stat().st_size  # unpacked bytes, not the (smaller) gzip layers
    quiet = daemon.docker("images", "-q", IMAGE, check=True).stdout.split()
    assert len(quiet) == 1 and len(quiet[0]) == 12


def test_networks_none_and_host(world) -> None:
    daemon, _, _ = world
    none = daemon.docker("run", "--rm", "--network", "none", IMAGE, "cat", "/proc/net/dev", check=True).stdout
    interfaces = [line.split(":")[0].strip() for line in none.splitlines()[2:]]
    assert interfaces == ["lo"]
    host = daemon.docker("run", "--rm", "--network", "host", IMAGE, "cat", "/proc/net/dev", check=True).stdout
    host_interfaces = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    assert {line.split(":")[0].strip() for line in host.splitlines()[2:]} == host_interfaces
    unknown = daemon.docker("run", "--rm", "--network", "no-such-net", IMAGE, "true")
    assert unknown.returncode == 125 and "network no-such-net not found" in unknown.stderr


def test_logs_follow_attach_and_exec_with_a_tty(world) -> None:
    daemon, _, _ = world
    daemon.docker("run", "-d", "--name", "follower", IMAGE, "sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done", check=True)
    followed = daemon.docker("logs", "-f", "follower", check=True)
    assert followed.stdout == "line 1\nline 2\nline 3\n"
    daemon.docker("rm", "follower", check=True)

    daemon.docker("run", "-d", "-i", "--name", "attachable", IMAGE, "sh", "-c", "read line; echo got $line", check=True)
    attached = subprocess.run(["docker", "attach", "attachable"], input="hello\n", capture_output=True, text=True, env=daemon.env, timeout=30)
    assert "got hello" in attached.stdout
    daemon.docker("rm", "-f", "attachable", check=True)

    daemon.docker("run", "-d", "--name", "exec-tty", IMAGE, "sleep", "1000", check=True)
    session = Pty(["docker", "exec", "-it", "exec-tty", "sh"], daemon.env, rows=33, cols=111)
    session.expect(b"# ")
    session.type("stty size; exit 3\r")
    session.expect(b"33 111")
    assert session.wait() == 3
    daemon.docker("rm", "-f", "exec-tty", check=True)


def test_no_process_deletes_an_image_a_container_uses(world, tmp_path: Path) -> None:
    daemon, _, _ = world
    daemon.docker("save", "-o", str(tmp_path / "image.tar"), IMAGE, check=True)
    with tarfile.open(tmp_path / "image.tar") as saved:
        layer = saved.extractfile(json.loads(saved.extractfile("manifest.json").read())[0]["Layers"][0])  # type: ignore[union-attr]
        (tmp_path / "rootfs.tar").write_bytes(layer.read())  # type: ignore[union-attr]
    daemon.docker("import", str(tmp_path / "rootfs.tar"), "only-name:1", check=True)  # an image with no children
    daemon.docker("create", "--name", "keeper", "only-name:1", "/bin/true", check=True)
    image_id = daemon.docker("inspect", "-f", "{{.Id}}", "only-name:1", check=True).stdout.strip()
    offline = subprocess.run(
        [sys.executable, "-m", "client.cli", "--store", str(daemon.root / "images"), "rmi", "-f", image_id],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # forced, the daemonless rmi untags but keeps the image and its snapshots for the container
    assert offline.returncode == 0 and "Deleted:" not in offline.stdout
    started = daemon.docker("start", "-a", "keeper")
    assert started.returncode == 0
    daemon.docker("rm", "keeper", check=True)
    assert daemon.docker("rmi", image_id, check=True).stdout.startswith(f"Deleted: {image_id}\n")
