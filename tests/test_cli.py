"""The `dockyard` command end to end: the real command as a subprocess, with its own --store and
--config under tmp_path, against a registry process (Dockyard, with and without auth; the
reference registry for search's catalog fallback) and skopeo for docker-archive interop.

Images are the reproducible busybox images of `tests/images.py`, brought into the store through
`dockyard load` of a docker archive written here by hand (skopeo's layout: `<diff id>.tar` plus
`<n>/layer.tar` symlinks, so `load` is checked against an independent writer of the format), or
through the library where only the registry side is under test. Each command costs a Python
start-up (~0.3-0.7 s), so tests chain many steps on one store rather than start afresh.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.cli import build_parser, main
from client.cli.context import Context
from client.cli.output import ellipsis, familiar, human_duration, human_size, table
from client.distribution import connect
from client.push import push
from client.store import ImageStore
from tests.conftest import HUB_ADMIN, RegistryProcess
from tests.images import OCI_TAG, Image, build_test_images, multi_platform_index, read_layout, single_image
from tests.reference_registry import ReferenceRegistry, reference_registry, requires_reference_registry  # noqa: F401
from tests.test_client_pull_push import skopeo

COMMANDS = ("login", "logout", "search", "pull", "push", "tag", "images", "rmi", "inspect", "history", "save", "load")
APP = "localhost:5000/acme/app:1.0"
ADMIN = HUB_ADMIN
ESCAPE = "\x1b"
requires_skopeo = pytest.mark.usefixtures("skopeo_installed")
filesystem_registry = pytest.mark.parametrize("registry_process", ["filesystem"], indirect=True)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@dataclass
class Dockyard:
    """`dockyard --store STORE --config CONFIG ...` as a subprocess."""

    store: Path
    config: Path
    home: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "client.cli", "--store", str(self.store), "--config", str(self.config), *args]

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "DOCKER_CONFIG"}
        env.update(HOME=str(self.home), XDG_DATA_HOME=str(self.home / "data"), **extra)
        return env

    def __call__(self, *args: str, expect: int = 0, input: str | None = None) -> Result:
        completed = subprocess.run(
            self.command(*args), capture_output=True, text=True, input=input, env=self.env(), timeout=120
        )
        result = Result(completed.returncode, completed.stdout, completed.stderr)
        assert result.returncode == expect, f"dockyard {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def with_store(self, store: Path) -> Dockyard:
        return Dockyard(store, self.config, self.home)

    def library(self) -> ImageStore:
        return ImageStore(self.store)


@pytest.fixture
def dockyard(tmp_path: Path) -> Dockyard:
    (tmp_path / "home").mkdir()
    return Dockyard(tmp_path / "store", tmp_path / "docker-config", tmp_path / "home")


def one_error(result: Result) -> str:
    """The single `Error: ...` line a failed command printed."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# -- archives made here ------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_docker_archive(path: Path, images: Sequence[tuple[Image, Sequence[str]]]) -> Path:
    """A docker archive as skopeo writes one: `<diff id hex>.tar` layers, `<n>/layer.tar` symlinks
    to them (which manifest.json names), `<config hex>.json`."""
    written: set[str] = set()
    with tarfile.open(path, "w") as tar:
        manifest = []
        for number, (image, tags) in enumerate(images):
            layers = []
            for index, layer in enumerate(image.layers):
                hex_id = layer.diff_id.split(":")[1]
                if hex_id not in written:
                    _add(tar, f"{hex_id}.tar", layer.tar)
                    written.add(hex_id)
                _add(tar, f"{number}-{index}/layer.tar", link=f"../{hex_id}.tar")
                layers.append(f"{number}-{index}/layer.tar")
            config_name = f"{image.config_digest.split(':')[1]}.json"
            _add(tar, config_name, image.config)
            manifest.append({"Config": config_name, "RepoTags": list(tags), "Layers": layers})
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def read_archive(path: Path) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """(manifest.json, {member name: bytes}) of an archive's regular files."""
    with tarfile.open(path) as tar:
        files = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}  # type: ignore[union-attr]
    return json.loads(files["manifest.json"]), files


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def table_rows(output: str) -> list[list[str]]:
    """A docker-style table split on runs of 2+ spaces (no cell holds two spaces in a row)."""
    return [re.split(r" {2,}", line.strip()) for line in output.splitlines()]


def put_image(dockyard: Dockyard, image: Image, *names: str) -> None:
    """Put a built image straight into the store through the library (setup, not under test)."""
    store = dockyard.library()
    for digest, data in image.blobs().items():
        store.write_blob(data, digest)
    for name in names:
        store.add_image(name, image.digest)


def inspect(dockyard: Dockyard, *names: str, expect: int = 0) -> list[dict[str, Any]]:
    return json.loads(dockyard("inspect", *names, expect=expect).stdout)


def load(dockyard: Dockyard, tmp_path: Path, images: Sequence[tuple[Image, Sequence[str]]]) -> Result:
    archive = write_docker_archive(tmp_path / f"in-{len(list(tmp_path.glob('in-*')))}.tar", images)
    return dockyard("load", "-i", str(archive))


# -- help and usage ----------------------------------------------------------------------------------


def test_every_command_has_help_and_usage_errors_exit_2(dockyard: Dockyard, capsys: pytest.CaptureFixture[str]) -> None:
    script = Path(sys.executable).parent / "dockyard"  # the console script pyproject.toml installs
    assert "COMMAND" in subprocess.run([script, "--help"], capture_output=True, text=True, check=True, timeout=60).stdout
    for command in COMMANDS:  # in-process: argparse alone answers --help
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: dockyard {command}") and "--store DIR" in out, out
    assert "required" in dockyard(expect=2).stderr
    # the shared options go before the command or after it
    args = build_parser().parse_args(["--insecure-registry", "a:1", "pull", "--insecure-registry", "b", "--store", "/s", "x"])
    settings = Context(args).settings()
    assert settings.insecure_registries == {"a:1", "b"} and Context(args).store_root == Path("/s")
    assert Context(build_parser().parse_args(["--config", "/c", "images"])).settings().config_dir == Path("/c")
    assert "the following arguments are required: NAME" in dockyard("pull", expect=2).stderr
    assert "outside the range" in dockyard("search", "--limit", "0", "x", expect=2).stderr
    assert "not allowed with argument" in dockyard("login", "-p", "x", "--password-stdin", "host", expect=2).stderr


def test_formats_match_docker() -> None:
    assert [human_size(n) for n in (0, 512, 999, 1000, 999_949, 1_229_437, 7_800_000_000)] == [
        "0B", "512B", "999B", "1kB", "1MB", "1.23MB", "7.8GB"
    ]
    day = 86400
    durations = (0.5, 1, 59, 60, 119, 3599, 3600, 47 * 3600, 3 * day, 20 * day, 90 * day, 800 * day)
    assert [human_duration(seconds) for seconds in durations] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "About a minute", "59 minutes",
        "About an hour", "47 hours", "3 days", "2 weeks", "3 months", "2 years",
    ]
    assert table(("A", "LONGER HEADER"), [("x", "y"), ("much longer cell", "z")]).splitlines() == [
        "A                  LONGER HEADER",
        "x                  y",
        "much longer cell   z",
    ]
    assert familiar("docker.io/library/alpine:3") == "alpine:3"
    assert familiar("docker.io/acme/app@sha256:" + "a" * 64) == "acme/app@sha256:" + "a" * 64
    assert familiar("localhost:5000/library/app:1") == "localhost:5000/library/app:1"
    assert ellipsis("x" * 50, 45) == "x" * 44 + "…"


# -- load, images, inspect, history, tag -------------------------------------------------------------


def test_loaded_image_is_listed_inspected_and_its_history_shown(dockyard: Dockyard, tmp_path: Path) -> None:
    image = single_image()
    assert load(dockyard, tmp_path, [(image, [APP])]).stdout == f"Loaded image: {APP}\n"
    short = image.config_digest.split(":")[1][:12]

    [document] = inspect(dockyard, APP)
    assert document["Id"] == image.config_digest
    assert document["RepoTags"] == [APP]
    assert document["RootFS"] == {"Type": "layers", "Layers": image.diff_ids}
    assert document["Architecture"] == image.config_json["architecture"] and document["Os"] == "linux"
    assert document["Config"] == image.config_json["config"]
    assert document["Created"] == "2024-01-01T00:00:00Z" and document["Author"] == "dockyard tests"
    stored = dockyard.library().resolve(APP)
    assert document["Size"] == stored.size and document["Descriptor"]["digest"] == stored.manifest_digest
    assert inspect(dockyard, short)[0]["Id"] == image.config_digest  # by short image ID too

    header, *rows = table_rows(dockyard("images").stdout)
    assert header == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert len(rows) == 1
    repository, tag, image_id, created, size = rows[0]
    assert (repository, tag, image_id, size) == ("localhost:5000/acme/app", "1.0", short, human_size(stored.size))
    assert re.fullmatch(r"\d+ (months|years) ago", created), created
    assert dockyard("images", "-q").stdout == f"{short}\n"
    assert image.config_digest in dockyard("images", "--no-trunc").stdout
    assert len(dockyard("images", "localhost:5000/acme/app").lines) == 2
    assert dockyard("images", "localhost:5000/acme/other").lines == ["REPOSITORY   TAG       IMAGE ID   CREATED   SIZE"]

    header, *rows = table_rows(dockyard("history", APP).stdout)
    assert header == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert [row[0] for row in rows] == [short, "<missing>", "<missing>"]
    newest = "/bin/sh -c #(nop) RUN rewrite greeting; rm /etc/dockyard/obsolete.txt"
    assert rows[0][2] == newest[:44] + "…"
    assert rows[2][2] == "/bin/sh -c #(nop) ADD busybox rootfs /"
    assert [row[3] for row in rows] == [human_size(layer.size) for layer in reversed(stored.layers)]
    assert all(row[4] == "tests/images.py" for row in rows)
    untruncated = dockyard("history", "--no-trunc", APP).stdout
    assert newest in untruncated and image.config_digest in untruncated

    assert dockyard("tag", short, "localhost:5000/acme/copy:2").stdout == ""
    assert inspect(dockyard, "localhost:5000/acme/copy:2")[0]["RepoTags"] == [APP, "localhost:5000/acme/copy:2"]

    # loading the same archive again changes nothing
    load(dockyard, tmp_path, [(image, [APP])])
    assert len(dockyard.library().images()) == 1


def test_rmi_of_one_of_two_images_sharing_layers_deletes_only_its_own(dockyard: Dockyard, tmp_path: Path) -> None:
    index = multi_platform_index()
    amd64, arm64 = index.image_for("amd64"), index.image_for("arm64")
    amd, arm = "localhost:5000/acme/amd64:1", "localhost:5000/acme/arm64:1"
    assert load(dockyard, tmp_path, [(amd64, [amd]), (arm64, [arm])]).lines == [f"Loaded image: {amd}", f"Loaded image: {arm}"]
    store = dockyard.library()
    amd_layers = [layer.digest for layer in store.resolve(amd).layers]
    arm_layers = [layer.digest for layer in store.resolve(arm).layers]
    assert amd_layers[:2] == arm_layers[:2] and amd_layers[2] != arm_layers[2]  # a shared base

    dockyard("tag", arm, "localhost:5000/acme/extra:1")
    assert dockyard("rmi", "localhost:5000/acme/extra:1").lines == ["Untagged: localhost:5000/acme/extra:1"]
    assert dockyard("rmi", arm).lines == [f"Untagged: {arm}", f"Deleted: {arm64.config_digest}", f"Deleted: {arm_layers[2]}"]

    [document] = inspect(dockyard, amd)
    assert document["RootFS"]["Layers"] == amd64.diff_ids
    assert all(store.has_blob(digest) for digest in amd_layers)
    assert not store.has_blob(arm_layers[2])

    missing = dockyard("rmi", "localhost:5000/acme/nothing:1", expect=1)
    assert one_error(missing) == "Error: No such image: localhost:5000/acme/nothing:1"

    # an ID named in two repositories needs --force
    dockyard("tag", amd, "localhost:5000/other/amd64:1")
    short = amd64.config_digest.split(":")[1][:12]
    conflict = one_error(dockyard("rmi", short, expect=1))
    assert conflict.startswith(f"Error: conflict: unable to delete {short} (must be forced)")
    assert dockyard("rmi", "-f", short).lines == [
        f"Untagged: {amd}",
        "Untagged: localhost:5000/other/amd64:1",
        f"Deleted: {amd64.config_digest}",
        *[f"Deleted: {digest}" for digest in reversed(amd_layers)],
    ]
    assert dockyard("images", "-q").stdout == ""


# -- save and load -------------------------------------------------------------------------------------


def test_save_writes_docker_save_layout_and_load_reads_it_back(dockyard: Dockyard, tmp_path: Path) -> None:
    index = multi_platform_index()
    amd64, arm64 = index.image_for("amd64"), index.image_for("arm64")
    amd, arm = "localhost:5000/acme/amd64:1", "localhost:5000/acme/arm64:1"
    load(dockyard, tmp_path, [(amd64, [amd]), (arm64, [arm])])

    archive = tmp_path / "saved.tar"
    assert dockyard("save", "-o", str(archive), amd, arm).stdout == ""
    manifest, files = read_archive(archive)
    assert [entry["RepoTags"] for entry in manifest] == [[amd], [arm]]
    for entry, image in zip(manifest, (amd64, arm64)):
        assert entry["Config"] == f"{image.config_digest.split(':')[1]}.json"
        assert files[entry["Config"]] == image.config  # byte for byte: the image ID survives
        assert [sha256(files[path]) for path in entry["Layers"]] == image.diff_ids  # uncompressed layers
        assert all(re.fullmatch(r"[0-9a-f]{64}/layer\.tar", path) for path in entry["Layers"])
    layer_files = [name for name in files if name.endswith("/layer.tar")]
    assert len(layer_files) == 4  # the shared base and app layers are written once
    repositories = json.loads(files["repositories"])
    assert repositories["localhost:5000/acme/amd64"]["1"] == manifest[0]["Layers"][-1].split("/")[0]
    assert all(files[name.replace("layer.tar", "VERSION")] == b"1.0" for name in layer_files)

    fresh = dockyard.with_store(tmp_path / "fresh")
    assert fresh("load", "-i", str(archive)).lines == [f"Loaded image: {amd}", f"Loaded image: {arm}"]
    assert [d["Id"] for d in inspect(fresh, amd, arm)] == [amd64.config_digest, arm64.config_digest]
    assert inspect(fresh, arm)[0]["RootFS"]["Layers"] == arm64.diff_ids

    # saved by image ID: under every tag the image has
    dockyard("tag", amd, "localhost:5000/acme/amd64:latest")
    dockyard("save", "-o", str(tmp_path / "by-id.tar"), amd64.config_digest[7:19])
    assert read_archive(tmp_path / "by-id.tar")[0][0]["RepoTags"] == [amd, "localhost:5000/acme/amd64:latest"]

    # to standard output, and from standard input
    with open(tmp_path / "piped.tar", "wb") as out:
        subprocess.run(dockyard.command("save", amd), stdout=out, check=True, env=dockyard.env(), timeout=60)
    assert read_archive(tmp_path / "piped.tar")[0][0]["RepoTags"] == [amd]
    with open(tmp_path / "piped.tar", "rb") as source:
        third = fresh.with_store(tmp_path / "third")
        piped = subprocess.run(third.command("load"), stdin=source, capture_output=True, text=True, env=third.env(), timeout=60)
    assert piped.returncode == 0 and piped.stdout == f"Loaded image: {amd}\n", piped.stderr


@requires_skopeo
def test_skopeo_reads_what_save_writes(dockyard: Dockyard, tmp_path: Path) -> None:
    index = multi_platform_index()
    amd64, arm64 = index.image_for("amd64"), index.image_for("arm64")
    amd, arm = "localhost:5000/acme/amd64:1", "localhost:5000/acme/arm64:1"
    load(dockyard, tmp_path, [(amd64, [amd]), (arm64, [arm])])
    archive = tmp_path / "saved.tar"
    dockyard("save", "-o", str(archive), amd, arm)

    for name, image in ((amd, amd64), (arm, arm64)):
        layout = tmp_path / f"layout-{image.platform['architecture']}"
        skopeo(tmp_path, "copy", f"docker-archive:{archive}:{name}", f"oci:{layout}:copied")
        index_json, blobs = read_layout(layout)
        manifest = json.loads(blobs[index_json["manifests"][0]["digest"]])
        config = json.loads(blobs[manifest["config"]["digest"]])
        assert config == image.config_json
        assert config["rootfs"]["diff_ids"] == image.diff_ids
        tars = [blobs[layer["digest"]] for layer in manifest["layers"]]
        assert [sha256(gzip.decompress(t) if t[:2] == b"\x1f\x8b" else t) for t in tars] == image.diff_ids


@requires_skopeo
def test_load_reads_what_skopeo_writes(dockyard: Dockyard, tmp_path: Path) -> None:
    built = build_test_images(tmp_path / "built")
    oci_archive, docker_archive = tmp_path / "oci.tar", tmp_path / "docker.tar"
    skopeo(tmp_path, "copy", built.ref(OCI_TAG), f"docker-archive:{oci_archive}:localhost:5000/interop/oci:1")
    skopeo(tmp_path, "copy", f"dir:{built.docker_dir}", f"docker-archive:{docker_archive}:localhost:5000/interop/docker:1")

    assert dockyard("load", "-i", str(oci_archive)).stdout == "Loaded image: localhost:5000/interop/oci:1\n"
    assert dockyard("load", "-i", str(docker_archive)).stdout == "Loaded image: localhost:5000/interop/docker:1\n"
    oci, docker = inspect(dockyard, "localhost:5000/interop/oci:1", "localhost:5000/interop/docker:1")
    assert oci["Id"] == built.oci.config_digest and oci["RootFS"]["Layers"] == built.oci.diff_ids
    assert docker["Id"] == built.docker.config_digest and docker["RootFS"]["Layers"] == built.docker.diff_ids
    # what was loaded unpacks to the filesystem the layers describe
    store = dockyard.library()
    store.materialize(store.resolve("localhost:5000/interop/oci:1"), tmp_path / "rootfs")
    assert (tmp_path / "rootfs/etc/dockyard/greeting.txt").read_bytes().startswith(b"hello from layer 3")


def test_unreadable_archives_are_one_line_errors(dockyard: Dockyard, tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar"
    assert one_error(dockyard("load", "-i", str(missing), expect=1)) == f"Error: No such file or directory: {missing}"
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    assert "is not a tar archive" in one_error(dockyard("load", "-i", str(tmp_path / "junk.tar"), expect=1))

    image = single_image()
    bad = write_docker_archive(tmp_path / "bad.tar", [(image, [APP])])
    with tarfile.open(bad, "a") as tar:  # a later member of the same name wins, as in tar extraction
        _add(tar, f"{image.layers[1].diff_id.split(':')[1]}.tar", image.layers[0].tar)
    error = one_error(dockyard("load", "-i", str(bad), expect=1))
    assert f"but the config's rootfs.diff_ids says {image.layers[1].diff_id}" in error
    assert dockyard("images", "-q").stdout == ""


def test_unknown_images_and_bad_names_are_one_line_errors(dockyard: Dockyard) -> None:
    unknown = "localhost:5000/acme/none:1"
    assert one_error(dockyard("inspect", unknown, expect=1)) == f"Error: No such image: {unknown}"
    assert one_error(dockyard("history", "nothing", expect=1)) == "Error: No such image: nothing"
    assert one_error(dockyard("tag", "nothing", "localhost:5000/acme/x:1", expect=1)) == "Error: No such image: nothing"
    assert one_error(dockyard("save", "-o", "/dev/null", "nothing", expect=1)) == "Error: No such image: nothing"
    invalid = one_error(dockyard("pull", "Acme/App", expect=1))
    assert invalid == "Error: invalid reference format: repository name 'Acme/App' must be lowercase"


# -- registries ------------------------------------------------------------------------------------------


@filesystem_registry
def test_loaded_image_pushes_and_pulls_into_a_fresh_store_with_docker_like_lines(
    dockyard: Dockyard, registry_process: RegistryProcess, tmp_path: Path
) -> None:
    image = single_image()
    host = f"{registry_process.host}:{registry_process.port}"
    name = f"{host}/acme/app:1.0"
    load(dockyard, tmp_path, [(image, [name])])
    stored = dockyard.library().resolve(name)  # load recompressed the layers: their digests are new
    layer_ids = {layer.digest.split(":")[1][:12] for layer in stored.layers}

    pushed = dockyard("push", name).lines
    assert pushed[0] == f"The push refers to repository [{host}/acme/app]"
    assert {line.split(": ")[0] for line in pushed[1:4]} == layer_ids
    assert {line.split(": ")[1] for line in pushed[1:4]} == {"Pushed"}
    assert pushed[4:] == [f"1.0: digest: {stored.manifest_digest} size: {stored.manifest_size}"]
    assert {line.split(": ")[1] for line in dockyard("push", name).lines[1:4]} == {"Layer already exists"}
    dockyard("tag", name, f"{host}/acme/mirror:1.0")
    assert {line.split(": ")[1] for line in dockyard("push", f"{host}/acme/mirror:1.0").lines[1:4]} == {"Mounted from acme/app"}

    fresh = dockyard.with_store(tmp_path / "fresh")
    pulled = fresh("pull", name)
    assert ESCAPE not in pulled.stdout  # not a terminal: plain lines
    lines = pulled.lines
    assert lines[0] == "1.0: Pulling from acme/app"
    assert {line for line in lines[1:4]} == {f"{layer}: Pull complete" for layer in layer_ids}
    assert lines[4:] == [f"Digest: {stored.manifest_digest}", f"Status: Downloaded newer image for {name}", name]
    [document] = inspect(fresh, name)
    assert document["Id"] == image.config_digest and document["RootFS"]["Layers"] == image.diff_ids
    assert table_rows(fresh("images").stdout)[1][:3] == [f"{host}/acme/app", "1.0", stored.short_id]

    again = fresh("pull", name).lines
    assert {line.split(": ")[1] for line in again[1:4]} == {"Already exists"}
    assert again[-2] == f"Status: Image is up to date for {name}"
    quiet = fresh("pull", "-q", f"{host}/acme/mirror:1.0")
    assert quiet.stdout == f"{host}/acme/mirror:1.0\n" and quiet.stderr == ""
    assert fresh("push", "-q", f"{host}/acme/mirror:1.0").stdout == f"{host}/acme/mirror:1.0\n"

    by_digest = dockyard.with_store(tmp_path / "by-digest")
    pinned = f"{host}/acme/app@{stored.manifest_digest}"
    assert by_digest("pull", "-q", pinned).stdout == f"{pinned}\n"
    assert table_rows(by_digest("images").stdout)[1][:3] == [f"{host}/acme/app", "<none>", stored.short_id]

    missing = fresh("pull", f"{host}/acme/app:nope", expect=1)
    assert one_error(missing) == f"Error: manifest for {host}/acme/app:nope not found: manifest unknown"
    assert one_error(fresh("push", f"{host}/acme/absent:1", expect=1)) == f"Error: No such image: {host}/acme/absent:1"


@filesystem_registry
def test_pull_platform_chooses_from_an_index(dockyard: Dockyard, registry_process: RegistryProcess) -> None:
    index = multi_platform_index()
    host = f"{registry_process.host}:{registry_process.port}"
    store = dockyard.library()
    for image in index.images:
        put_image(dockyard, image, f"{host}/acme/multi:{image.platform['architecture']}")
        asyncio.run(push(f"{host}/acme/multi:{image.platform['architecture']}", store))

    async def put_index() -> None:
        async with connect(host) as client:
            await client.put_manifest("acme/multi", "1", index.manifest, index.media_type)

    asyncio.run(put_index())
    pulled = dockyard("pull", "--platform", "linux/arm64", f"{host}/acme/multi:1").lines
    assert pulled[-3] == f"Digest: {index.digest}"  # the index's digest, as docker shows it
    [document] = inspect(dockyard, f"{host}/acme/multi:1")
    assert document["Id"] == index.image_for("arm64").config_digest
    assert (document["Architecture"], document["Variant"]) == ("arm64", "v8")
    assert "no matching manifest for linux/s390x" in one_error(
        dockyard("pull", "--platform", "linux/s390x", f"{host}/acme/multi:1", expect=1)
    )


def run_on_terminal(command: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run `command` with stdout and stderr on a pseudo-terminal; (exit status, what it drew)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not data:
                break
            output += data
        return process.wait(timeout=10), output.decode(errors="replace")
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()


@filesystem_registry
def test_pull_on_a_terminal_draws_progress_bars(dockyard: Dockyard, registry_process: RegistryProcess, tmp_path: Path) -> None:
    host = f"{registry_process.host}:{registry_process.port}"
    name = f"{host}/acme/bars:1"
    put_image(dockyard, single_image(), name)
    asyncio.run(push(name, dockyard.library()))

    fresh = dockyard.with_store(tmp_path / "fresh")
    status, drawn = run_on_terminal(fresh.command("pull", name), fresh.env(TERM="xterm-256color", COLUMNS="120"))
    assert status == 0, drawn
    assert ESCAPE + "[" in drawn  # rich redrew the bars
    assert drawn.count("Pull complete") >= 3
    assert f"Status: Downloaded newer image for {name}" in drawn


def test_login_and_logout_against_dockyard_with_auth(dockyard: Dockyard, hub_process: RegistryProcess, tmp_path: Path) -> None:
    hub = hub_process
    host = f"{hub.host}:{hub.port}"
    config_file = dockyard.config / "config.json"
    name = f"{host}/{ADMIN[0]}/app:1"
    put_image(dockyard, single_image(), name)

    refused = one_error(dockyard("push", name, expect=1))
    assert refused == f"Error: push access denied for {host}/{ADMIN[0]}/app: authentication required"
    wrong = one_error(dockyard("login", "-u", ADMIN[0], "--password-stdin", host, input="guess\n", expect=1))
    assert wrong == f"Error: login to {host} failed: incorrect username or password"
    assert not config_file.exists()
    interactive = one_error(dockyard("login", host, expect=2))
    assert interactive == "Error: Cannot perform an interactive login from a non TTY device"

    assert dockyard("login", "-u", ADMIN[0], "--password-stdin", host, input=ADMIN[1] + "\n").stdout == "Login Succeeded\n"
    saved = json.loads(config_file.read_text())
    assert saved["auths"][host]["auth"] == base64.b64encode(":".join(ADMIN).encode()).decode()
    assert config_file.stat().st_mode & 0o777 == 0o600
    assert dockyard("push", "-q", name).stdout == f"{name}\n"
    insecure = dockyard("login", "-u", ADMIN[0], "-p", ADMIN[1], host)
    assert insecure.stdout == "Login Succeeded\n" and "--password-stdin" in insecure.stderr

    assert dockyard("logout", host).stdout == f"Removing login credentials for {host}\n"
    assert host not in json.loads(config_file.read_text())["auths"]
    assert dockyard("logout", host).stdout == f"Not logged in to {host}\n"
    denied = one_error(dockyard.with_store(tmp_path / "anonymous")("pull", name, expect=1))
    assert denied.startswith(f"Error: pull access denied for {host}/{ADMIN[0]}/app")


@filesystem_registry
def test_search_prints_a_table(dockyard: Dockyard, registry_process: RegistryProcess, tmp_path: Path) -> None:
    host = f"{registry_process.host}:{registry_process.port}"
    put_image(dockyard, single_image(), f"{host}/acme/searchable:1")
    asyncio.run(push(f"{host}/acme/searchable:1", dockyard.library()))
    result = dockyard("search", f"{host}/searchable")
    assert table_rows(result.stdout) == [["NAME", "DESCRIPTION", "STARS", "OFFICIAL"], ["acme/searchable", "0"]]
    assert result.stderr == ""
    assert dockyard("search", f"{host}/nothing-like-it").lines == ["NAME      DESCRIPTION   STARS     OFFICIAL"]


@requires_reference_registry
def test_search_says_when_the_registry_only_has_a_catalog(
    dockyard: Dockyard, reference_registry: ReferenceRegistry, tmp_path: Path  # noqa: F811
) -> None:
    host = reference_registry.host
    put_image(dockyard, single_image(), f"{host}/acme/web:1", f"{host}/tools/webhook:1", f"{host}/acme/worker:1")
    for repository in ("acme/web", "tools/webhook", "acme/worker"):
        asyncio.run(push(f"{host}/{repository}:1", dockyard.library()))
    result = dockyard("search", "--limit", "5", f"{host}/web")
    assert [row[0] for row in table_rows(result.stdout)] == ["NAME", "acme/web", "tools/webhook"]
    assert result.stderr == f"Note: {host} has no search API; showing repositories of its catalog whose name contains 'web'\n"


def test_untagged_image_loads_as_none_and_is_removed_by_id(dockyard: Dockyard, tmp_path: Path) -> None:
    """`docker save <image id>` writes RepoTags null; docker load keeps such an image untagged."""
    image = single_image()
    loaded = load(dockyard, tmp_path, [(image, [])])
    assert loaded.stdout == f"Loaded image ID: {image.config_digest}\n"
    rows = table_rows(dockyard("images").stdout)
    assert rows[1][:3] == ["<none>", "<none>", image.config_digest.split(":")[1][:12]]
    assert inspect(dockyard, image.config_digest)[0]["RootFS"]["Layers"] == image.diff_ids
    removed = dockyard("rmi", image.config_digest.split(":")[1][:12])
    assert f"Deleted: {image.config_digest}" in removed.lines
    assert table_rows(dockyard("images").stdout)[1:] == []
