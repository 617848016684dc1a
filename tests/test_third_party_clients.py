"""Real third-party clients against a Dockyard registry process: skopeo and podman.

The images are real (a busybox root filesystem plus layers that add, change and whiteout
files; see tests/images.py), pushed and pulled by the clients over HTTP on loopback, and every
test checks digests and bytes, not exit codes alone.

Isolation: both tools run with HOME, XDG_*, TMPDIR, registries.conf, policy.json, auth file,
containers.conf and storage.conf all under the test's tmp_path, and never read or write the
machine's own container storage or caches:

- c/image keeps its blob-info cache in /var/lib/containers/cache for root, whatever HOME says;
  `_CONTAINERS_ROOTLESS_UID` (set for root only) makes it use $XDG_DATA_HOME instead. The cache
  is what lets a client mount a blob from another repository, so a fresh one per test also
  makes the cross-repository mounts below deterministic.
- podman runs with `--root/--runroot/--tmpdir/...` under tmp_path and the vfs driver, inside
  a private mount namespace (`unshare --mount`, root only) where /run and /dev/shm are the
  test's own directories: its SHM lock file, crun's state and the network run directory would
  otherwise land in the machine's /dev/shm and /run.
- Containers run with crun, `--network none` and `--cgroups disabled`. Hosts with "hybrid"
  cgroups (v1 controllers plus a cgroup2 mount with controllers at /sys/fs/cgroup/unified),
  like this sandbox, make crun refuse to start anything, so that cgroup2 mount is detached in
  podman's private namespace. Without CAP_SYS_RESOURCE podman 4.3's default rlimits (1048576)
  cannot be set either, so containers.conf gives limits within the current hard limits.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocispec import mediatypes
from tests.conftest import RegistryProcess
from tests.images import (
    DOCKER_TAG,
    GREETING_V1,
    GREETING_V2,
    MULTI_TAG,
    OBSOLETE,
    OCI_TAG,
    BuiltImages,
    FsEntry,
    Image,
    build_test_images,
    gunzip,
    oci_archive,
    read_layout,
    read_tree,
    sha256,
    write_layout,
)

COMMAND_TIMEOUT = 90
REPO = "org/team/app"
MANIFEST_ACCEPT = ", ".join(sorted(mediatypes.MANIFEST_TYPES))

LAUNCHER = """#!/bin/sh
# podman for the tests, inside the private mount namespace `unshare --mount` gave it: the test's
# own /run and /dev/shm, and no cgroup2 mount when the host is "hybrid" (crun refuses those).
set -e
mount -n --make-rprivate /
mount -n --bind "$DOCKYARD_TEST_RUN" /run
mount -n --bind "$DOCKYARD_TEST_SHM" /dev/shm
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  umount -n -l /sys/fs/cgroup/unified
fi
exec "$DOCKYARD_TEST_PODMAN" "$@"
"""


# podman's run root holds conmon's sockets, whose paths must stay short (podman refuses a run
# root longer than 50 characters), so it is given inside the namespace's /run, which is
# <tmp_path>/clients/podman/run; so is libpod's tmp dir.
PODMAN_RUNROOT = "/run/containers/storage"
PODMAN_TMPDIR = "/run/libpod"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required for these tests (Debian package {name!r}); install it, do not skip"
    return path


# -- the tools, isolated under tmp_path -----------------------------------------------------


@dataclass
class Tools:
    root: Path
    registry: RegistryProcess
    env: dict[str, str]
    podman_prefix: list[str]

    @property
    def host(self) -> str:
        return f"{self.registry.host}:{self.registry.port}"

    def docker_ref(self, repository: str, reference: str = "latest") -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"docker://{self.host}/{repository}{separator}{reference}"

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=self.root
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
                f"registry log (tail):\n{self.registry_log()[-4000:]}"
            )
        return result

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([require_tool("skopeo"), *args], check)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([*self.podman_prefix, *args], check)

    def registry_log(self) -> str:
        log = self.registry.root.parent / f"registry-{self.registry.port}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    # direct HTTP, to see exactly what the registry stored and serves
    def http(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{self.registry.url}{path}", method=method, headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        """(Content-Type, Docker-Content-Digest, body) of a manifest as the registry serves it."""
        status, headers, body = self.http(f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        assert status == 200, (status, body)
        return headers["Content-Type"], headers["Docker-Content-Digest"], body

    def blob(self, repository: str, digest: str) -> bytes:
        status, headers, body = self.http(f"/v2/{repository}/blobs/{digest}")
        assert status == 200, (status, body)
        # On S3 with redirects the bytes come from the presigned URL, which has no such header.
        assert headers.get("Docker-Content-Digest", digest) == digest
        assert sha256(body) == digest
        return body


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _container_ulimits() -> list[str]:
    """rlimits a container can be given without CAP_SYS_RESOURCE (podman 4.3 asks for 1048576).

    podman raises its own RLIMIT_NOFILE to its hard limit and lowers RLIMIT_NPROC to 32768
    before it starts crun, so these are at most what crun may set.
    """
    limits = []
    for name, kind, ceiling in (("nofile", resource.RLIMIT_NOFILE, 1_048_576), ("nproc", resource.RLIMIT_NPROC, 32_768)):
        hard = resource.getrlimit(kind)[1]
        value = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
        limits.append(f"{name}={value}:{value}")
    return limits


def make_tools(root: Path, registry: RegistryProcess) -> Tools:
    home = root / "home"
    _write(home / ".config/containers/policy.json", json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    for directory in ("home/.local/share", "home/.cache", "tmp", "podman/run", "podman/shm"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    xdg_runtime = root / "xdg-run"
    xdg_runtime.mkdir(mode=0o700, exist_ok=True)
    registries_conf = _write(root / "registries.conf", 'unqualified-search-registries = []\nshort-name-mode = "enforcing"\n')
    auth_file = _write(root / "auth.json", '{"auths": {}}\n')
    ulimits = ", ".join(f'"{limit}"' for limit in _container_ulimits())
    containers_conf = _write(
        root / "containers.conf",
        "[containers]\n"
        f"default_ulimits = [{ulimits}]\n"
        'log_driver = "k8s-file"\n'
        "[engine]\n"
        'events_logger = "none"\n'
        'cgroup_manager = "cgroupfs"\n',
    )
    storage_conf = _write(
        root / "storage.conf",
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/podman/root"\nrunroot = "{PODMAN_RUNROOT}"\n',
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith(("CONTAINERS_", "REGISTRY_AUTH", "XDG_", "DOCKER_"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_RUNTIME_DIR=str(xdg_runtime),
        TMPDIR=str(root / "tmp"),
        CONTAINERS_REGISTRIES_CONF=str(registries_conf),
        CONTAINERS_CONF=str(containers_conf),
        CONTAINERS_STORAGE_CONF=str(storage_conf),
        REGISTRY_AUTH_FILE=str(auth_file),
        DOCKYARD_TEST_RUN=str(root / "podman/run"),
        DOCKYARD_TEST_SHM=str(root / "podman/shm"),
        DOCKYARD_TEST_PODMAN=require_tool("podman"),
    )
    if os.geteuid() == 0:
        # c/image puts root's blob-info cache in /var/lib/containers/cache; as "uid 65534" it
        # uses $XDG_DATA_HOME/containers/cache. Only c/image path defaults read this variable.
        env["_CONTAINERS_ROOTLESS_UID"] = "65534"
    launcher = _write(root / "podman-in-namespace.sh", LAUNCHER)
    launcher.chmod(0o755)
    podman_prefix = [
        require_tool("unshare"), "--mount", "--propagation", "unchanged", str(launcher),
        "--root", str(root / "podman/root"),
        "--runroot", PODMAN_RUNROOT,
        "--tmpdir", PODMAN_TMPDIR,
        "--storage-driver", "vfs",
        "--events-backend", "none",
        "--cgroup-manager", "cgroupfs",
        "--network-config-dir", str(root / "podman/networks"),
        "--volumepath", str(root / "podman/volumes"),
    ]  # fmt: skip
    return Tools(root, registry, env, podman_prefix)


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def tools(tmp_path: Path, registry_process: RegistryProcess) -> Iterator[Tools]:
    assert os.geteuid() == 0, "podman here runs as root (vfs storage, private mount namespace); run the tests as root"
    require_tool("skopeo")
    require_tool("podman")
    require_tool("crun")
    yield make_tools(tmp_path / "clients", registry_process)
    # conmon and podman's cleanup process outlive `podman run --rm` by a moment.
    marker = str(tmp_path / "clients")
    deadline = time.monotonic() + 10
    while (left := _processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"client processes left behind: {left}"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    return build_test_images(tmp_path_factory.mktemp("images"))


# -- checks ------------------------------------------------------------------------------


def untar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def layer_file(blob: bytes, path: str) -> bytes:
    """The content of `path` in a gzipped layer tar."""
    with tarfile.open(fileobj=io.BytesIO(gunzip(blob))) as archive:
        extracted = archive.extractfile(path)
        assert extracted is not None, path
        return extracted.read()


def assert_same_filesystem(actual: dict[str, FsEntry], expected: dict[str, FsEntry]) -> None:
    """Same paths; files with the same bytes and mode; symlinks with the same target."""
    assert sorted(actual) == sorted(expected)
    for path, entry in expected.items():
        got = actual[path]
        assert got.kind == entry.kind, path
        if entry.kind == "file":
            assert got.data == entry.data, path
            assert got.mode == entry.mode, path
        elif entry.kind == "symlink":
            assert got.target == entry.target, path


def assert_registry_has_image(tools: Tools, repository: str, image: Image, reference: str, media_type: str | None = None) -> str:
    """The manifest served for `reference` is `image`'s (byte-exact) and every blob is served."""
    content_type, digest, body = tools.manifest(repository, reference)
    assert content_type == (media_type or image.media_type)
    assert body == image.manifest
    assert digest == image.digest == sha256(body)
    assert tools.blob(repository, image.config_digest) == image.config
    for layer in image.layers:
        assert tools.blob(repository, layer.digest) == layer.blob
    return digest


def assert_dir_copy_is(directory: Path, image: Image) -> None:
    """What `skopeo copy ... dir:<directory>` wrote is `image`: manifest, config and layer bytes."""
    assert (directory / "manifest.json").read_bytes() == image.manifest
    assert (directory / image.config_digest.split(":", 1)[1]).read_bytes() == image.config
    for layer in image.layers:
        data = (directory / layer.digest.split(":", 1)[1]).read_bytes()
        assert data == layer.blob
        assert sha256(gunzip(data)) == layer.diff_id
    # unpacked: the app layer adds files, the top layer replaces one and whites out another
    app, top = ((directory / layer.digest.split(":", 1)[1]).read_bytes() for layer in image.layers[1:])
    assert layer_file(app, "etc/dockyard/greeting.txt") == GREETING_V1
    assert layer_file(top, "etc/dockyard/greeting.txt") == GREETING_V2
    assert "etc/dockyard/.wh.obsolete.txt" in untar(gunzip(top))
    assert layer_file(app, "etc/dockyard/obsolete.txt") == OBSOLETE


# -- skopeo ------------------------------------------------------------------------------


def test_skopeo_oci_image_round_trip(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    image = images.oci
    digest_file = tmp_path / "pushed.digest"
    tools.skopeo(
        "copy", "--dest-tls-verify=false", "--digestfile", str(digest_file),
        images.ref(OCI_TAG), tools.docker_ref(REPO, OCI_TAG),
    )  # fmt: skip
    assert digest_file.read_text().strip() == image.digest
    assert_registry_has_image(tools, REPO, image, OCI_TAG)

    raw = tools.skopeo("inspect", "--tls-verify=false", "--raw", tools.docker_ref(REPO, OCI_TAG)).stdout
    assert raw.encode() == image.manifest
    raw_config = tools.skopeo("inspect", "--tls-verify=false", "--config", "--raw", tools.docker_ref(REPO, OCI_TAG)).stdout
    assert raw_config.encode() == image.config
    inspected = json.loads(tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref(REPO, OCI_TAG)).stdout)
    assert inspected["Digest"] == image.digest
    assert inspected["Layers"] == image.layer_digests
    assert inspected["Architecture"] == image.config_json["architecture"]
    assert inspected["Os"] == "linux"
    assert inspected["Labels"] == {"org.dockyard.test.variant": "oci"}
    assert inspected["RepoTags"] == [OCI_TAG]
    assert inspected["Name"] == f"{tools.host}/{REPO}"

    # by digest as well as by tag, into a fresh OCI layout and a dir:
    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(REPO, image.digest), f"oci:{tmp_path / 'out-oci'}:copy")
    index, blobs = read_layout(tmp_path / "out-oci")
    assert [(entry["mediaType"], entry["digest"], entry["size"]) for entry in index["manifests"]] == [
        (mediatypes.OCI_MANIFEST, image.digest, len(image.manifest))
    ]
    assert blobs == image.blobs()

    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(REPO, OCI_TAG), f"dir:{tmp_path / 'out-dir'}")
    assert_dir_copy_is(tmp_path / "out-dir", image)


def test_skopeo_docker_schema2_push_and_conversion(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    image = images.docker
    # A Docker schema 2 image as built, kept byte-exact by --format v2s2.
    tools.skopeo(
        "copy", "--dest-tls-verify=false", "--format", "v2s2",
        f"dir:{images.docker_dir}", tools.docker_ref(REPO, DOCKER_TAG),
    )  # fmt: skip
    assert_registry_has_image(tools, REPO, image, DOCKER_TAG, mediatypes.DOCKER_MANIFEST)
    inspected = json.loads(tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref(REPO, DOCKER_TAG)).stdout)
    assert inspected["Digest"] == image.digest
    assert inspected["Layers"] == image.layer_digests
    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(REPO, DOCKER_TAG), f"dir:{tmp_path / 'out-docker'}")
    assert_dir_copy_is(tmp_path / "out-docker", image)

    # The OCI image converted by skopeo on the way in: new manifest, same config and layer bytes.
    oci = images.oci
    digest_file = tmp_path / "converted.digest"
    tools.skopeo(
        "copy", "--dest-tls-verify=false", "--format", "v2s2", "--digestfile", str(digest_file),
        images.ref(OCI_TAG), tools.docker_ref(REPO, "converted"),
    )  # fmt: skip
    content_type, digest, body = tools.manifest(REPO, "converted")
    assert content_type == mediatypes.DOCKER_MANIFEST
    assert digest == sha256(body) == digest_file.read_text().strip() != oci.digest
    converted = json.loads(body)
    assert converted["mediaType"] == mediatypes.DOCKER_MANIFEST
    assert converted["config"] == {"mediaType": mediatypes.DOCKER_CONFIG, "size": len(oci.config), "digest": oci.config_digest}
    assert [(layer["mediaType"], layer["digest"]) for layer in converted["layers"]] == [
        (mediatypes.DOCKER_LAYER_GZIP, layer.digest) for layer in oci.layers
    ]
    raw = tools.skopeo("inspect", "--tls-verify=false", "--raw", tools.docker_ref(REPO, "converted")).stdout
    assert raw.encode() == body
    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(REPO, digest), f"dir:{tmp_path / 'out-converted'}")
    assert (tmp_path / "out-converted/manifest.json").read_bytes() == body
    for layer in oci.layers:
        assert (tmp_path / "out-converted" / layer.digest.split(":", 1)[1]).read_bytes() == layer.blob


def test_skopeo_two_platform_index(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    index = images.multi
    tools.skopeo("copy", "--dest-tls-verify=false", "--all", images.ref(MULTI_TAG), tools.docker_ref(REPO, MULTI_TAG))
    content_type, digest, body = tools.manifest(REPO, MULTI_TAG)
    assert (content_type, digest, body) == (mediatypes.OCI_INDEX, index.digest, index.manifest)
    for image in index.images:
        assert_registry_has_image(tools, REPO, image, image.digest)

    raw = tools.skopeo("inspect", "--tls-verify=false", "--raw", tools.docker_ref(REPO, MULTI_TAG)).stdout
    assert raw.encode() == index.manifest
    for architecture in ("amd64", "arm64"):
        image = index.image_for(architecture)
        inspected = json.loads(
            tools.skopeo(
                "--override-os", "linux", "--override-arch", architecture,
                "inspect", "--tls-verify=false", tools.docker_ref(REPO, MULTI_TAG),
            ).stdout  # fmt: skip
        )
        assert inspected["Digest"] == index.digest  # skopeo reports the digest of what the tag names
        assert inspected["Architecture"] == architecture
        assert inspected["Layers"] == image.layer_digests

    # the whole index back out, and one platform picked from it
    tools.skopeo("copy", "--src-tls-verify=false", "--all", tools.docker_ref(REPO, MULTI_TAG), f"oci:{tmp_path / 'out-all'}:multi")
    layout_index, blobs = read_layout(tmp_path / "out-all")
    assert [entry["digest"] for entry in layout_index["manifests"]] == [index.digest]
    assert blobs == index.blobs()

    arm64 = index.image_for("arm64")
    tools.skopeo(
        "--override-os", "linux", "--override-arch", "arm64", "--override-variant", "v8",
        "copy", "--src-tls-verify=false", tools.docker_ref(REPO, MULTI_TAG), f"dir:{tmp_path / 'out-arm64'}",
    )  # fmt: skip
    assert_dir_copy_is(tmp_path / "out-arm64", arm64)
    top_layer = (tmp_path / "out-arm64" / arm64.layers[-1].digest.split(":", 1)[1]).read_bytes()
    assert layer_file(top_layer, "etc/dockyard/platform") == b"linux/arm64\n"


def _mounted(log: str, repository: str, source: str, digest: str) -> bool:
    """Whether the access log shows `digest` mounted into `repository` from `source` (201)."""
    encoded = digest.replace(":", "%3A")
    for line in log.splitlines():
        if f"POST /v2/{repository}/blobs/uploads/" in line and re.search(r'" 201 ', line):
            if (f"mount={encoded}" in line or f"mount={digest}" in line) and (
                f"from={source.replace('/', '%2F')}" in line or f"from={source}" in line
            ):
                return True
    return False


def test_skopeo_copy_between_repositories_mounts_blobs(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    image, index = images.oci, images.multi
    tools.skopeo("copy", "--dest-tls-verify=false", images.ref(OCI_TAG), tools.docker_ref(REPO, OCI_TAG))
    tools.skopeo("copy", "--dest-tls-verify=false", "--all", images.ref(MULTI_TAG), tools.docker_ref(REPO, MULTI_TAG))

    mirror = "org/other/mirror"
    tools.skopeo(
        "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        tools.docker_ref(REPO, OCI_TAG), tools.docker_ref(mirror, "v1"),
    )  # fmt: skip
    tools.skopeo(
        "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--all",
        tools.docker_ref(REPO, MULTI_TAG), tools.docker_ref(mirror, "multi"),
    )  # fmt: skip
    assert_registry_has_image(tools, mirror, image, "v1")
    _, digest, body = tools.manifest(mirror, "multi")
    assert (digest, body) == (index.digest, index.manifest)
    for platform_image in index.images:
        assert_registry_has_image(tools, mirror, platform_image, platform_image.digest)

    # skopeo knew where the layers were (its blob-info cache) and mounted them, not uploaded them
    log = tools.registry_log()
    for layer in image.layers:
        assert _mounted(log, mirror, REPO, layer.digest), f"{layer.digest} was not mounted into {mirror}:\n{log}"

    listed = json.loads(tools.skopeo("list-tags", "--tls-verify=false", f"docker://{tools.host}/{mirror}").stdout)
    assert listed == {"Repository": f"{tools.host}/{mirror}", "Tags": ["multi", "v1"]}
    status, _, catalog = tools.http("/v2/_catalog")
    assert status == 200
    assert {REPO, mirror} <= set(json.loads(catalog)["repositories"])

    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(mirror, "v1"), f"dir:{tmp_path / 'from-mirror'}")
    assert_dir_copy_is(tmp_path / "from-mirror", image)


def test_skopeo_repository_names_like_api_paths(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    """Names containing `blobs/uploads`, `manifests`, `tags/list`... and a deep one route right."""
    image = images.oci
    deep = "/".join(["deep"] * 30 + ["x" * 40])  # 189 characters
    names = ["org/blobs/uploads", "a/manifests/b", "x/tags/list", "v2/blobs", "a/referrers/b", deep]
    tools.skopeo("copy", "--dest-tls-verify=false", images.ref(OCI_TAG), tools.docker_ref(names[0], "v1"))
    for name in names[1:]:
        tools.skopeo(
            "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
            tools.docker_ref(names[0], "v1"), tools.docker_ref(name, "v1"),
        )  # fmt: skip
    for name in names:
        assert_registry_has_image(tools, name, image, "v1")
        raw = tools.skopeo("inspect", "--tls-verify=false", "--raw", tools.docker_ref(name, "v1")).stdout
        assert raw.encode() == image.manifest
        listed = json.loads(tools.skopeo("list-tags", "--tls-verify=false", f"docker://{tools.host}/{name}").stdout)
        assert listed["Tags"] == ["v1"]
    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(deep, "v1"), f"dir:{tmp_path / 'deep'}")
    assert_dir_copy_is(tmp_path / "deep", image)
    status, _, catalog = tools.http("/v2/_catalog")
    assert status == 200 and json.loads(catalog)["repositories"] == sorted(names)


def test_skopeo_longest_repository_name(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    """The longest name a client sends to this host: `host/name` is capped at 255 characters."""
    prefix = "/".join(["deep"] * 20 + ["x" * 60])
    name = prefix + "/" + "y" * (255 - len(tools.host) - 1 - len(prefix) - 1)
    assert len(f"{tools.host}/{name}") == 255
    tools.skopeo("copy", "--dest-tls-verify=false", images.ref(OCI_TAG), tools.docker_ref(name, "v1"))
    assert_registry_has_image(tools, name, images.oci, "v1")
    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(name, "v1"), f"dir:{tmp_path / 'long'}")
    assert_dir_copy_is(tmp_path / "long", images.oci)


# -- podman ------------------------------------------------------------------------------


def test_podman_push_pull_and_run(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    image = images.oci
    image_id = image.config_digest.split(":", 1)[1]
    archive = oci_archive(write_layout(tmp_path / "podman-layout", {"latest": image}), tmp_path / "app.oci.tar")
    tools.podman("load", "-i", str(archive))
    (local,) = json.loads(tools.podman("image", "inspect", image_id).stdout)
    assert local["Id"] == image_id
    assert local["RootFS"]["Layers"] == image.diff_ids
    assert local["Architecture"] == image.config_json["architecture"]
    assert local["Config"]["Labels"] == {"org.dockyard.test.variant": "oci"}

    # podman pushes from its store: it recompresses the layers, so the registry holds new
    # layer blobs (and a new manifest) whose uncompressed content must be our layers.
    pushed: dict[str, str] = {}
    for podman_format, media_type in (("oci", mediatypes.OCI_MANIFEST), ("v2s2", mediatypes.DOCKER_MANIFEST)):
        reference = f"{tools.host}/podman/app:{podman_format}"
        digest_file = tmp_path / f"{podman_format}.digest"
        tools.podman("tag", image_id, reference)
        tools.podman("push", "--tls-verify=false", "--format", podman_format, "--digestfile", str(digest_file), reference)
        content_type, digest, body = tools.manifest("podman/app", podman_format)
        assert content_type == media_type
        assert digest == sha256(body) == digest_file.read_text().strip()
        manifest = json.loads(body)
        assert manifest["config"]["digest"] == image.config_digest
        assert tools.blob("podman/app", image.config_digest) == image.config
        assert [sha256(gunzip(tools.blob("podman/app", layer["digest"]))) for layer in manifest["layers"]] == image.diff_ids
        pushed[podman_format] = digest
    assert pushed["oci"] != pushed["v2s2"]

    tools.podman("rmi", "--force", image_id)
    assert tools.podman("image", "exists", image_id, check=False).returncode == 1

    # each format pulled into an empty store (an image keeps the digest it was first pulled by)
    for podman_format, digest in pushed.items():
        reference = f"{tools.host}/podman/app:{podman_format}"
        tools.podman("rmi", "--force", "--ignore", image_id)
        pulled_id = tools.podman("pull", "--quiet", "--tls-verify=false", reference).stdout.strip()
        assert pulled_id == image_id
        (local,) = json.loads(tools.podman("image", "inspect", reference).stdout)
        assert local["Digest"] == digest
        assert local["RepoDigests"] == [f"{tools.host}/podman/app@{digest}"]
        assert local["RootFS"]["Layers"] == image.diff_ids
    by_digest = f"{tools.host}/podman/app@{pushed['oci']}"
    assert tools.podman("pull", "--quiet", "--tls-verify=false", by_digest).stdout.strip() == image_id
    (local,) = json.loads(tools.podman("image", "inspect", image_id).stdout)
    assert sorted(local["RepoDigests"]) == sorted(f"{tools.host}/podman/app@{digest}" for digest in pushed.values())

    # run it: the files of the top layer, the whiteout applied, busybox working
    script = (
        "cat /etc/dockyard/greeting.txt /etc/dockyard/platform /etc/dockyard/variant; "
        "test -e /etc/dockyard/obsolete.txt && echo obsolete-present || echo obsolete-gone; "
        "wc -c < /usr/share/dockyard/data.bin"
    )
    output = tools.podman(
        "run", "--rm", "--pull", "never", "--network", "none", "--cgroups", "disabled",
        f"{tools.host}/podman/app:v2s2", "/bin/sh", "-c", script,
    ).stdout  # fmt: skip
    expected_size = len(image.filesystem()["usr/share/dockyard/data.bin"].data)
    assert output.splitlines() == [
        GREETING_V2.decode().strip(),
        f"linux/{image.config_json['architecture']}",
        "oci",
        "obsolete-gone",
        str(expected_size),
    ]
    assert GREETING_V1 not in output.encode()

    # and every file, symlink and mode of the unpacked image
    mountpoint = tools.podman("image", "mount", image_id).stdout.strip()
    try:
        assert_same_filesystem(read_tree(Path(mountpoint)), image.filesystem())
    finally:
        tools.podman("image", "unmount", image_id)


# -- errors as real clients see them -------------------------------------------------------


def test_client_errors(tools: Tools, images: BuiltImages, tmp_path: Path) -> None:
    tools.skopeo("copy", "--dest-tls-verify=false", images.ref(OCI_TAG), tools.docker_ref(REPO, OCI_TAG))

    missing = tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref(REPO, "no-such-tag"), check=False)
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr
    assert f"{REPO}:no-such-tag" in missing.stderr

    missing_digest = "sha256:" + "0" * 64
    by_digest = tools.skopeo("inspect", "--tls-verify=false", "--raw", tools.docker_ref(REPO, missing_digest), check=False)
    assert by_digest.returncode != 0
    assert "manifest unknown" in by_digest.stderr

    no_repo = tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref("no/such/repo", "latest"), check=False)
    assert no_repo.returncode != 0
    assert "manifest unknown" in no_repo.stderr or "name unknown" in no_repo.stderr

    pulled = tools.podman("pull", "--tls-verify=false", f"{tools.host}/{REPO}:no-such-tag", check=False)
    assert pulled.returncode != 0
    assert "manifest unknown" in pulled.stderr

    # A repository name outside the grammar never reaches the registry: the clients check the
    # same grammar (distribution's reference grammar is the OCI one) and refuse it first.
    for bad in ("Org/App", "org//app", "org/app-"):
        pushed = tools.skopeo("copy", "--dest-tls-verify=false", images.ref(OCI_TAG), f"docker://{tools.host}/{bad}:v1", check=False)
        assert pushed.returncode != 0
        assert f"Invalid destination name docker://{tools.host}/{bad}:v1: invalid reference format" in pushed.stderr
    image_id = images.oci.config_digest.split(":", 1)[1]
    tools.podman("load", "-i", str(oci_archive(write_layout(tmp_path / "one", {"latest": images.oci}), tmp_path / "one.tar")))
    podman_push = tools.podman("push", "--tls-verify=false", image_id, f"docker://{tools.host}/Org/App:v1", check=False)
    assert podman_push.returncode != 0
    assert "invalid reference format: repository name must be lowercase" in podman_push.stderr
    status, _, catalog = tools.http("/v2/_catalog")
    assert status == 200 and json.loads(catalog)["repositories"] == [REPO]
    # ...and the registry refuses the same names sent by hand
    for bad in ("Org/App", "org//app", "org/app-"):
        status, _, body = tools.http(f"/v2/{bad}/blobs/uploads/", method="POST")
        assert status == 400, (bad, status, body)
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID"

    # A blob the repository no longer links: the client fails on that blob with a 404.
    layer = images.oci.layers[1].digest
    status, _, _ = tools.http(f"/v2/{REPO}/blobs/{layer}", method="DELETE")
    assert status == 202
    broken = tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref(REPO, OCI_TAG), f"dir:{tmp_path / 'broken'}", check=False)
    assert broken.returncode != 0
    assert layer in broken.stderr and "404" in broken.stderr
