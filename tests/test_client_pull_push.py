"""pull, push and search end to end over real sockets.

Peers: Dockyard as a process (`registry_process`), the reference registry (open and behind
htpasswd Basic auth) and skopeo. A recording proxy (`tests/registry_proxy.py`) in front of a
registry shows what the client really sent (Range, mounts, how many GETs) and injects 503s and
broken connections. Images are the real, reproducible ones of `tests/images.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from client.distribution import search
from client.errors import AuthenticationFailed, AuthenticationRequired, ImageNotFound, RegistryUnavailable
from client.login import login
from client.mounts import MountHints
from client.pull import pull
from client.push import push
from client.registry_http import ClientSettings, RetryPolicy
from client.store import ImageStore
from tests.conftest import RegistryProcess
from tests.images import OCI_TAG, Image, Index, build_test_images, multi_platform_index, read_layout, single_image
from tests.reference_registry import (  # noqa: F401  (fixtures)
    ReferenceRegistry,
    reference_registry,
    reference_registry_basic,
    requires_reference_registry,
)
from tests.registry_proxy import Fault, RegistryProxy

FAST_RETRY = ClientSettings(retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05))


@dataclass
class RecordingProgress:
    totals: dict[str, int] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    def start(self, id: str, total: int) -> None:
        self.totals[id] = total
        self.moved[id] = 0

    def advance(self, id: str, n: int) -> None:
        self.moved[id] += n

    def done(self, id: str, status: str) -> None:
        self.statuses[id] = status


def new_store(path: Path) -> ImageStore:
    return ImageStore(path)


def store_image(store: ImageStore, image: Image | Index, name: str, platform_image: Image | None = None) -> Any:
    """Put a built image (or an index and one of its images) into the store under `name`."""
    for digest, data in image.blobs().items():
        store.write_blob(data, digest)
    if isinstance(image, Index):
        assert platform_image is not None
        return store.add_image(name, platform_image.digest, index_digest=image.digest)
    return store.add_image(name, image.digest)


def assert_store_holds(store: ImageStore, image: Image) -> None:
    for digest, data in image.blobs().items():
        assert store.read_blob(digest) == data


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Any]:
    proxies: list[RegistryProxy] = []

    async def start(upstream: str) -> RegistryProxy:
        proxy = await RegistryProxy(upstream).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.close()


def blob_gets(proxy: RegistryProxy) -> list[str]:
    return [exchange.path.rsplit("/", 1)[1] for exchange in proxy.requests("GET", "/blobs/sha256:")]


# -- round trips ---------------------------------------------------------------------------------


async def test_push_to_dockyard_and_pull_back_into_a_fresh_store(registry_process: RegistryProcess, tmp_path: Path) -> None:
    image = single_image()
    name = f"{registry_process.host}:{registry_process.port}/acme/app:1.0"
    store_image(new_store(tmp_path / "a"), image, name)
    progress = RecordingProgress()

    digest = await push(name, new_store(tmp_path / "a"), progress=progress)
    assert digest == image.digest
    assert set(progress.statuses) == set(image.layer_digests)
    assert set(progress.statuses.values()) == {"Pushed"}
    assert all(progress.moved[d] == progress.totals[d] == len(image.blobs()[d]) for d in image.layer_digests)

    fresh = new_store(tmp_path / "b")
    progress = RecordingProgress()
    record = await pull(name, fresh, progress=progress)
    assert record.manifest_digest == image.digest
    assert record.config_digest == image.config_digest
    assert_store_holds(fresh, image)
    assert set(progress.statuses.values()) == {"Pull complete"}
    assert all(progress.moved[d] == len(image.blobs()[d]) for d in image.layer_digests)
    assert fresh.resolve(name).manifest_digest == image.digest
    repository = name.rsplit(":", 1)[0]
    assert record.repo_digests == [f"{repository}@{image.digest}"], "the pulled digest is recorded, as docker does"
    assert fresh.resolve(f"{repository}@{image.digest}").config_digest == image.config_digest
    assert new_store(tmp_path / "a").resolve(name).repo_digests == [f"{repository}@{image.digest}"], "and the pushed one"


async def test_pull_chooses_the_platform_from_an_index(registry_process: RegistryProcess, tmp_path: Path) -> None:
    index = multi_platform_index()
    amd64, arm64 = index.image_for("amd64"), index.image_for("arm64")
    host = f"{registry_process.host}:{registry_process.port}"
    source = new_store(tmp_path / "source")
    store_image(source, index, f"{host}/multi/amd64:1", amd64)
    store_image(source, index, f"{host}/multi/arm64:1", arm64)
    await push(f"{host}/multi/amd64:1", source, f"{host}/multi/app:amd64")
    await push(f"{host}/multi/arm64:1", source, f"{host}/multi/app:arm64")
    # the index itself goes up through the client's distribution API
    from client.distribution import connect

    async with connect(host) as client:
        assert await client.put_manifest("multi/app", "1", index.manifest, index.media_type) == index.digest

    fresh = new_store(tmp_path / "fresh")
    record = await pull(f"{host}/multi/app:1", fresh, platform="linux/arm64/v8")
    assert record.manifest_digest == arm64.digest
    assert fresh.read_blob(index.digest) == index.manifest  # the index is kept too
    record = await pull(f"{host}/multi/app:1", new_store(tmp_path / "other"), platform="linux/amd64")
    assert record.manifest_digest == amd64.digest


async def test_pulling_a_missing_tag_names_it(registry_process: RegistryProcess, tmp_path: Path) -> None:
    host = f"{registry_process.host}:{registry_process.port}"
    with pytest.raises(ImageNotFound) as raised:
        await pull(f"{host}/acme/nothing:nope", new_store(tmp_path / "s"))
    assert str(raised.value) == f"manifest for {host}/acme/nothing:nope not found: manifest unknown"


# -- Basic auth against the reference registry ----------------------------------------------------


@requires_reference_registry
async def test_reference_registry_with_basic_auth_login_push_pull(
    reference_registry_basic: ReferenceRegistry, tmp_path: Path
) -> None:
    registry = reference_registry_basic.host
    settings = ClientSettings(config_dir=tmp_path / "docker-config")
    image = single_image(docker=True)
    name = f"{registry}/acme/app:docker"
    store_image(new_store(tmp_path / "a"), image, name)

    with pytest.raises(AuthenticationRequired) as raised:
        await push(name, new_store(tmp_path / "a"), settings=settings)
    assert str(raised.value) == f"push access denied for {registry}/acme/app: authentication required"
    with pytest.raises(AuthenticationFailed):
        await login(registry, "alice", "guess", settings.config_dir)

    await login(registry, "alice", "wonderland", settings.config_dir)
    # a small chunk threshold makes the busybox layer go up in PATCH chunks
    assert await push(name, new_store(tmp_path / "a"), settings=settings, chunk_threshold=64 * 1024, chunk_size=256 * 1024) == image.digest
    record = await pull(name, new_store(tmp_path / "b"), settings=settings)
    assert record.manifest_digest == image.digest
    assert_store_holds(new_store(tmp_path / "b"), image)
    patches = reference_registry_basic.access_log('"PATCH /v2/acme/app/blobs/uploads/')
    assert len(patches) >= 3, "the large layer was not uploaded in chunks"

    with pytest.raises(AuthenticationRequired) as raised:
        await pull(name, new_store(tmp_path / "c"), settings=ClientSettings(config_dir=tmp_path / "nobody"))
    assert str(raised.value) == f"pull access denied for {registry}/acme/app: authentication required"


# -- resume, retries, skips, mounts ---------------------------------------------------------------


@pytest.mark.parametrize("registry_process", ["filesystem"], indirect=True)  # the proxy must see blob bytes: no S3 redirect
async def test_interrupted_download_is_resumed_with_range(registry_process: RegistryProcess, tmp_path: Path, proxy_factory) -> None:
    image = single_image()
    host = f"{registry_process.host}:{registry_process.port}"
    store_image(new_store(tmp_path / "source"), image, f"{host}/acme/app:1")
    await push(f"{host}/acme/app:1", new_store(tmp_path / "source"))
    proxy = await proxy_factory(registry_process.url)

    big = max(image.layers, key=lambda layer: layer.size)
    half = big.size // 2
    target = new_store(tmp_path / "target")
    with target.ingest(big.digest) as ingest:  # a previous pull that died half way
        ingest.write(big.blob[:half])

    progress = RecordingProgress()
    record = await pull(f"{proxy.host}/acme/app:1", target, progress=progress)
    assert record.manifest_digest == image.digest
    [get] = [e for e in proxy.requests("GET", f"/blobs/{big.digest}")]
    assert get.headers["Range"] == f"bytes={half}-"
    assert get.status == 206
    assert progress.moved[big.digest] == big.size  # the resumed prefix counts too
    assert target.read_blob(big.digest) == big.blob


async def test_a_corrupt_partial_download_is_discarded_and_fetched_again(
    registry_process: RegistryProcess, tmp_path: Path, proxy_factory
) -> None:
    image = single_image()
    host = f"{registry_process.host}:{registry_process.port}"
    store_image(new_store(tmp_path / "source"), image, f"{host}/acme/app:1")
    await push(f"{host}/acme/app:1", new_store(tmp_path / "source"))
    proxy = await proxy_factory(registry_process.url)
    big = max(image.layers, key=lambda layer: layer.size)
    target = new_store(tmp_path / "target")
    with target.ingest(big.digest) as ingest:
        ingest.write(b"\0" * 1000)  # not the layer's first bytes

    await pull(f"{proxy.host}/acme/app:1", target)
    ranged, whole = proxy.requests("GET", f"/blobs/{big.digest}")
    assert ranged.headers["Range"] == "bytes=1000-" and "Range" not in whole.headers
    assert target.read_blob(big.digest) == big.blob


@pytest.mark.parametrize("registry_process", ["filesystem"], indirect=True)  # the proxy must see blob bytes: no S3 redirect
async def test_connection_broken_mid_layer_resumes_where_it_stopped(
    registry_process: RegistryProcess, tmp_path: Path, proxy_factory
) -> None:
    image = single_image()
    host = f"{registry_process.host}:{registry_process.port}"
    store_image(new_store(tmp_path / "source"), image, f"{host}/acme/app:1")
    await push(f"{host}/acme/app:1", new_store(tmp_path / "source"))
    proxy = await proxy_factory(registry_process.url)
    big = max(image.layers, key=lambda layer: layer.size)
    proxy.add_fault(Fault(lambda r: r.method == "GET" and big.digest in r.path, cut_after=300_000))

    record = await pull(f"{proxy.host}/acme/app:1", new_store(tmp_path / "target"), settings=FAST_RETRY)
    assert record.manifest_digest == image.digest
    first, second = proxy.requests("GET", f"/blobs/{big.digest}")
    assert "Range" not in first.headers
    resumed_from = int(second.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from <= 300_000 and second.status == 206


@pytest.mark.parametrize("registry_process", ["filesystem"], indirect=True)  # the proxy must see blob bytes: no S3 redirect
async def test_503_and_429_are_retried_then_succeed(registry_process: RegistryProcess, tmp_path: Path, proxy_factory) -> None:
    image = single_image()
    host = f"{registry_process.host}:{registry_process.port}"
    store_image(new_store(tmp_path / "source"), image, f"{host}/acme/app:1")
    await push(f"{host}/acme/app:1", new_store(tmp_path / "source"))
    proxy = await proxy_factory(registry_process.url)
    proxy.add_fault(Fault(lambda r: "/manifests/" in r.path, times=2, status=503))
    proxy.add_fault(Fault(lambda r: image.config_digest in r.path, times=1, status=429, headers={"Retry-After": "1"}))

    started = time.monotonic()
    record = await pull(f"{proxy.host}/acme/app:1", new_store(tmp_path / "target"), settings=FAST_RETRY)
    assert record.manifest_digest == image.digest
    assert [e.status for e in proxy.requests("GET", "/manifests/")] == [503, 503, 200]
    assert [e.status for e in proxy.requests("GET", image.config_digest)] == [429, 200]
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured


async def test_retries_are_bounded(registry_process: RegistryProcess, tmp_path: Path, proxy_factory) -> None:
    proxy = await proxy_factory(registry_process.url)
    proxy.add_fault(Fault(lambda r: "/manifests/" in r.path, times=100, status=503))
    with pytest.raises(RegistryUnavailable) as raised:
        await pull(f"{proxy.host}/acme/app:1", new_store(tmp_path / "target"), settings=FAST_RETRY)
    assert f"pull of {proxy.host}/acme/app failed: registry unavailable" in str(raised.value)
    assert len(proxy.requests("GET", "/manifests/")) == FAST_RETRY.retry.attempts


async def test_layers_already_in_the_store_are_not_downloaded(registry_process: RegistryProcess, tmp_path: Path, proxy_factory) -> None:
    index = multi_platform_index()  # two images sharing their base and app layers
    amd64, arm64 = index.image_for("amd64"), index.image_for("arm64")
    host = f"{registry_process.host}:{registry_process.port}"
    source = new_store(tmp_path / "source")
    store_image(source, amd64, f"{host}/acme/amd64:1")
    store_image(source, arm64, f"{host}/acme/arm64:1")
    await push(f"{host}/acme/amd64:1", source)
    await push(f"{host}/acme/arm64:1", source)
    proxy = await proxy_factory(registry_process.url)

    target = new_store(tmp_path / "target")
    await pull(f"{proxy.host}/acme/amd64:1", target)
    assert sorted(blob_gets(proxy)) == sorted({*amd64.layer_digests, amd64.config_digest})
    proxy.exchanges.clear()
    progress = RecordingProgress()
    await pull(f"{proxy.host}/acme/arm64:1", target, progress=progress, platform="linux/arm64")
    shared = set(amd64.layer_digests) & set(arm64.layer_digests)
    assert len(shared) == 2
    assert sorted(blob_gets(proxy)) == sorted({*arm64.layer_digests, arm64.config_digest} - shared)
    assert {progress.statuses[d] for d in shared} == {"Already exists"}


async def test_push_to_a_second_repository_mounts_instead_of_uploading(
    registry_process: RegistryProcess, tmp_path: Path, proxy_factory
) -> None:
    image = single_image()
    proxy = await proxy_factory(registry_process.url)
    store = new_store(tmp_path / "store")
    store_image(store, image, f"{proxy.host}/acme/one:1")
    await push(f"{proxy.host}/acme/one:1", store)
    assert MountHints(tmp_path / "store").sources(image.layers[0].digest, proxy.host) == ["acme/one"]
    proxy.exchanges.clear()

    progress = RecordingProgress()
    assert await push(f"{proxy.host}/acme/one:1", store, f"{proxy.host}/acme/two:1", progress=progress) == image.digest
    mounts = proxy.requests("POST", "/v2/acme/two/blobs/uploads/", query_key="mount")
    assert sorted(e.query["mount"] for e in mounts) == sorted([image.config_digest, *image.layer_digests])
    assert all(e.query["from"] == "acme/one" and e.status == 201 for e in mounts)
    assert not proxy.requests("PATCH") and not proxy.requests("PUT", "/blobs/uploads/")
    assert set(progress.statuses.values()) == {"Mounted from acme/one"}

    # pushed again: everything is already there
    progress = RecordingProgress()
    await push(f"{proxy.host}/acme/one:1", store, f"{proxy.host}/acme/two:1", progress=progress)
    assert set(progress.statuses.values()) == {"Layer already exists"}


async def test_chunked_upload_to_dockyard(registry_process: RegistryProcess, tmp_path: Path, proxy_factory) -> None:
    image = single_image()
    proxy = await proxy_factory(registry_process.url)
    name = f"{proxy.host}/acme/chunks:1"
    store_image(new_store(tmp_path / "a"), image, name)
    await push(name, new_store(tmp_path / "a"), chunk_threshold=100 * 1024, chunk_size=128 * 1024)
    big = max(image.layers, key=lambda layer: layer.size)
    patches = proxy.requests("PATCH")
    chunked = [layer.size for layer in image.layers if layer.size > 100 * 1024]
    assert len(patches) == sum(-(-size // (128 * 1024)) for size in chunked) > len(chunked)
    assert {e.headers["Content-Range"] for e in patches} >= {f"0-{128 * 1024 - 1}", f"{128 * 1024}-{256 * 1024 - 1}"}
    record = await pull(name, new_store(tmp_path / "b"))
    assert record.manifest_digest == image.digest
    assert new_store(tmp_path / "b").read_blob(big.digest) == big.blob


@requires_reference_registry
async def test_image_pulled_from_one_registry_pushes_to_another(
    registry_process: RegistryProcess, reference_registry: ReferenceRegistry, tmp_path: Path
) -> None:
    image = single_image()
    dockyard = f"{registry_process.host}:{registry_process.port}"
    store_image(new_store(tmp_path / "source"), image, f"{dockyard}/acme/app:1")
    await push(f"{dockyard}/acme/app:1", new_store(tmp_path / "source"))

    store = new_store(tmp_path / "store")
    await pull(f"{dockyard}/acme/app:1", store)
    store.tag(f"{dockyard}/acme/app:1", f"{reference_registry.host}/mirror/app:1")
    assert await push(f"{reference_registry.host}/mirror/app:1", store) == image.digest
    # nothing to mount from on the other registry: the layers were uploaded
    assert reference_registry.access_log("mount=") == []
    record = await pull(f"{reference_registry.host}/mirror/app:1", new_store(tmp_path / "again"))
    assert record.manifest_digest == image.digest


# -- search ----------------------------------------------------------------------------------------


async def test_search_uses_v1_search(registry_process: RegistryProcess, tmp_path: Path) -> None:
    host = f"{registry_process.host}:{registry_process.port}"
    image = single_image()
    store_image(new_store(tmp_path / "s"), image, f"{host}/acme/searchable:1")
    await push(f"{host}/acme/searchable:1", new_store(tmp_path / "s"))
    results = await search(f"{host}/searchable")
    assert not results.from_catalog
    assert [result.name for result in results.results] == ["acme/searchable"]


@requires_reference_registry
async def test_search_falls_back_to_the_catalog_and_says_so(reference_registry: ReferenceRegistry, tmp_path: Path) -> None:
    image = single_image()
    store = new_store(tmp_path / "s")
    for repository in ("acme/web", "acme/worker", "tools/webhook"):
        name = f"{reference_registry.host}/{repository}:1"
        store_image(store, image, name)
        await push(name, store)
    results = await search(f"{reference_registry.host}/web")
    assert results.from_catalog
    assert [result.name for result in results.results] == ["acme/web", "tools/webhook"]
    assert len((await search(f"{reference_registry.host}/acme", limit=1)).results) == 1


# -- skopeo interop --------------------------------------------------------------------------------


def skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "skopeo-home"
    (home / ".local/share").mkdir(parents=True, exist_ok=True)
    policy = home / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local/share"), XDG_CONFIG_HOME=str(home / ".config"))
    env["REGISTRY_AUTH_FILE"] = str(home / "auth.json")
    if os.geteuid() == 0:
        env["_CONTAINERS_ROOTLESS_UID"] = "65534"  # keep c/image's blob cache under XDG_DATA_HOME
    return subprocess.run(
        ["skopeo", "--policy", str(policy), *args], env=env, capture_output=True, text=True, check=True, timeout=60
    )


@pytest.mark.usefixtures("skopeo_installed")
async def test_skopeo_pushes_and_the_client_pulls(registry_process: RegistryProcess, tmp_path: Path) -> None:
    built = build_test_images(tmp_path / "built")
    host = f"{registry_process.host}:{registry_process.port}"
    skopeo(tmp_path, "copy", "--dest-tls-verify=false", built.ref(OCI_TAG), f"docker://{host}/interop/skopeo:1")
    store = new_store(tmp_path / "store")
    record = await pull(f"{host}/interop/skopeo:1", store)
    assert record.manifest_digest == built.oci.digest
    assert_store_holds(store, built.oci)


@pytest.mark.usefixtures("skopeo_installed")
async def test_client_pushes_and_skopeo_pulls_and_verifies(registry_process: RegistryProcess, tmp_path: Path) -> None:
    image = single_image()
    host = f"{registry_process.host}:{registry_process.port}"
    name = f"{host}/interop/client:1"
    store_image(new_store(tmp_path / "store"), image, name)
    await push(name, new_store(tmp_path / "store"))

    inspected = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", f"docker://{name}").stdout)
    assert inspected["Digest"] == image.digest
    assert inspected["Layers"] == image.layer_digests
    skopeo(tmp_path, "copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path / 'copy'}:1")
    index, blobs = read_layout(tmp_path / "copy")
    assert index["manifests"][0]["digest"] == image.digest
    for digest, data in image.blobs().items():
        assert blobs[digest] == data
