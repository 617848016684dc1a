"""Unit tests of the pure parts, alone: manifest parsing, the image config, byte ranges, upload
state as the distribution API reports it, the error mapping, Hub permission rules, and the
events a push emits. The end-to-end tests see these only through HTTP."""

from __future__ import annotations

import json

import pytest

from ocispec import mediatypes
from ocispec.digest import Digest
from ocispec.image_config import ImageConfig, InvalidImageConfig
from ocispec.manifest import ManifestInvalid, inferred_media_type, parse_manifest
from registry.api.v2.errors import STATUS, headers_of, status_of, upload_headers
from registry.core import errors
from registry.core.blobs import Blobs, ByteRange
from registry.core.events import Actor, Event
from registry.core.hub import Hub
from registry.core.hub.errors import Conflict, InvalidAccountName
from registry.core.hub.permissions import ALL_ACTIONS, repository_actions
from registry.core.manifests import Manifests, Reference
from registry.core.repositories import Repositories
from registry.core.uploads import Uploads, UploadStatus
from storage_backends.filesystem import FilesystemBackend

CONFIG = b'{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}'
LAYER = b"layer bytes"


def descriptor(data: bytes, media_type: str = mediatypes.OCI_LAYER_GZIP, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of_bytes(data)), "size": len(data), **extra}


def image_manifest(**extra: object) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": descriptor(CONFIG, mediatypes.OCI_CONFIG),
        "layers": [descriptor(LAYER)],
        **extra,
    }


# -- manifest parsing ------------------------------------------------------------------------
def test_a_manifest_lists_what_it_references_with_the_sizes_it_claims():
    parsed = parse_manifest(json.dumps(image_manifest()).encode(), mediatypes.OCI_MANIFEST)
    assert parsed.media_type == mediatypes.OCI_MANIFEST
    assert parsed.blobs == [Digest.of_bytes(CONFIG), Digest.of_bytes(LAYER)]
    assert parsed.sizes == {str(Digest.of_bytes(CONFIG)): len(CONFIG), str(Digest.of_bytes(LAYER)): len(LAYER)}
    assert parsed.artifact_type == mediatypes.OCI_CONFIG  # no artifactType: the config's media type


def test_an_index_lists_its_children_and_no_blobs():
    child = json.dumps(image_manifest()).encode()
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [descriptor(child, mediatypes.OCI_MANIFEST)]}
    parsed = parse_manifest(json.dumps(index).encode(), None)
    assert (parsed.media_type, parsed.blobs, parsed.manifests) == (mediatypes.OCI_INDEX, [], [Digest.of_bytes(child)])


def test_the_media_type_comes_from_the_header_the_body_or_the_shape():
    body = image_manifest()
    del body["mediaType"]
    raw = json.dumps(body).encode()
    assert parse_manifest(raw, mediatypes.DOCKER_MANIFEST).media_type == mediatypes.DOCKER_MANIFEST
    assert parse_manifest(raw, "application/json").media_type == mediatypes.OCI_MANIFEST  # by shape
    assert inferred_media_type({"manifests": []}) == mediatypes.OCI_INDEX
    assert inferred_media_type({"schemaVersion": 2}) is None
    with pytest.raises(ManifestInvalid, match="cannot tell the manifest type"):
        parse_manifest(b'{"schemaVersion": 2}', None)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (json.dumps(image_manifest()).encode(), mediatypes.DOCKER_MANIFEST, "does not match"),
        (b'{"schemaVersion": 1, "fsLayers": []}', None, "schema 1"),
        (b"[1, 2]", None, "JSON object"),
        (b"{not json", None, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply"),
        (json.dumps(image_manifest(layers=[{"mediaType": "x", "digest": "sha256:abc", "size": 1}])).encode(), None, "layers"),
        (json.dumps(image_manifest(layers=[descriptor(LAYER, size=-1)])).encode(), None, "size"),
        (json.dumps({**image_manifest(), "schemaVersion": 3}).encode(), None, "schemaVersion must be 2"),
        (json.dumps({**image_manifest(), "mediaType": "text/plain"}).encode(), None, "unsupported manifest media type"),
    ],
)
def test_a_bad_manifest_is_refused_with_the_reason(body, content_type, message):
    with pytest.raises(ManifestInvalid, match=message):
        parse_manifest(body, content_type)


def test_non_distributable_layers_with_urls_are_not_required_blobs():
    foreign = descriptor(b"windows base", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", urls=["https://example.com/base"])
    parsed = parse_manifest(json.dumps(image_manifest(layers=[foreign, descriptor(LAYER)])).encode(), None)
    assert parsed.foreign == [Digest.of_bytes(b"windows base")]
    assert Digest.of_bytes(b"windows base") not in parsed.blobs


# -- the image config ------------------------------------------------------------------------
def test_an_image_config_reads_leniently_but_diff_ids_strictly():
    config = ImageConfig.of(
        {
            "os": "linux",
            "architecture": 64,  # wrong type: as if absent
            "variant": "v8",
            "config": {"Cmd": ["sh"], "Env": "PATH=/bin", "Labels": {"a": "b"}, "Healthcheck": {"Test": ["NONE"]}},
            "history": [{"created_by": "RUN x", "empty_layer": "yes"}, "junk", {"empty_layer": True}],
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        }
    )
    assert config.platform == "linux/v8"
    assert (config.runtime.Cmd, config.runtime.Env, config.runtime.Labels) == (["sh"], None, {"a": "b"})
    assert config.runtime_as_stored == {"Cmd": ["sh"], "Env": "PATH=/bin", "Labels": {"a": "b"}, "Healthcheck": {"Test": ["NONE"]}}
    assert ImageConfig.of({"config": {"Labels": None}}).runtime_as_stored == {"Labels": None}, "inspect shows nulls as stored"
    assert [(step.created_by, step.empty_layer) for step in config.history] == [("RUN x", False), ("", True)]
    assert config.diff_ids() == ["sha256:" + "a" * 64]
    with pytest.raises(InvalidImageConfig, match="missing or not a list"):
        ImageConfig.of({"rootfs": {"diff_ids": "sha256:x"}}).diff_ids()
    with pytest.raises(InvalidImageConfig, match="not a digest"):
        ImageConfig.of({"rootfs": {"diff_ids": ["sha256:short"]}}).diff_ids()
    with pytest.raises(InvalidImageConfig, match="not JSON"):
        ImageConfig.parse(b"\xff")
    with pytest.raises(InvalidImageConfig, match="not a JSON object"):
        ImageConfig.parse(b"[]")


# -- byte ranges and upload state ------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [(0, None, (0, 10)), (2, 4, (2, 3)), (8, 100, (8, 2)), (None, 3, (7, 3)), (None, 50, (0, 10))],
)
def test_a_byte_range_selects_within_the_content(first, last, expected):
    assert ByteRange(first, last).within(10) == expected


@pytest.mark.parametrize(("first", "last"), [(10, None), (5, 4), (None, 0)])
def test_a_range_that_selects_nothing_is_invalid_and_says_the_size(first, last):
    with pytest.raises(errors.RangeInvalid) as raised:
        ByteRange(first, last).within(10)
    assert status_of(raised.value) == 416
    assert headers_of(raised.value) == {"Content-Range": "bytes */10"}


def test_an_upload_reports_an_inclusive_range_and_its_location():
    assert upload_headers(UploadStatus("acme/app", "ab" * 16, 0))["Range"] == "0-0"
    headers = upload_headers(UploadStatus("acme/app", "ab" * 16, 5))
    assert headers == {"Range": "0-4", "Location": f"/v2/acme/app/blobs/uploads/{'ab' * 16}", "Docker-Upload-UUID": "ab" * 16}


async def test_a_chunk_out_of_order_is_refused_with_the_session_as_it_stands(tmp_path):
    storage = FilesystemBackend(str(tmp_path))
    uploads = Uploads(storage, Blobs(storage, Repositories(storage)))
    session = await uploads.start("acme/app")

    async def body(data: bytes):
        yield data

    await uploads.append("acme/app", session.upload_id, body(b"12345"), start=0, length=5)
    with pytest.raises(errors.RangeInvalid) as raised:
        await uploads.append("acme/app", session.upload_id, body(b"678"), start=3, length=3)
    assert raised.value.upload == UploadStatus("acme/app", session.upload_id, 5)
    assert headers_of(raised.value)["Range"] == "0-4"
    with pytest.raises(errors.SizeInvalid):
        await uploads.append("acme/app", session.upload_id, body(b"67"), start=5, length=3)
    assert (await uploads.status("acme/app", session.upload_id)).size == 5, "a refused chunk adds nothing"


def test_every_domain_error_has_a_status():
    domain = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.RegistryError)]
    assert sorted(cls.__name__ for cls in domain if cls is not errors.RegistryError and cls not in STATUS) == []
    assert status_of(errors.RegistryError()) == 500
    assert status_of(errors.TooManyTags()) == 414 and errors.TooManyTags.code == "TAG_INVALID"


# -- permission rules ------------------------------------------------------------------------
async def test_who_may_do_what_to_a_repository(database):
    hub = Hub.over(database)
    admin = await hub.users.create("root", "pw", admin=True)
    alice = await hub.users.create("alice", "pw")
    bob = await hub.users.create("bob", "pw")
    await hub.organizations.create("team", "alice")
    await hub.organizations.set_member("team", "bob", "read")
    await hub.repositories.update("alice/open", visibility="public")

    assert await repository_actions(hub, admin, "anyone/thing") == ALL_ACTIONS
    assert await repository_actions(hub, alice, "alice/app") == ALL_ACTIONS  # her namespace
    assert await repository_actions(hub, alice, "team/app") == ALL_ACTIONS  # org admin
    assert await repository_actions(hub, bob, "team/app") == {"pull"}  # read role
    assert await repository_actions(hub, bob, "alice/app") == frozenset()
    assert await repository_actions(hub, bob, "alice/open") == {"pull"}  # public
    assert await repository_actions(hub, None, "alice/open") == {"pull"}
    assert await repository_actions(hub, alice, "single") == frozenset(), "one-component names are the site admins'"


async def test_users_and_organizations_share_one_namespace(database):
    hub = Hub.over(database)
    await hub.users.create("alice", "pw")
    with pytest.raises(Conflict, match="taken"):
        await hub.organizations.create("alice", "alice")
    with pytest.raises(Conflict, match="reserved"):
        await hub.users.create("library", "pw")
    with pytest.raises(InvalidAccountName):
        await hub.users.create("Not Valid", "pw")
    assert await hub.users.authenticate("alice", "pw") is not None
    assert await hub.users.authenticate("alice", "wrong") is None
    record, secret = await hub.tokens.create("alice", "ci")
    assert (await hub.users.authenticate("alice", secret)).name == "alice"
    await hub.tokens.revoke("alice", record.id)
    assert await hub.users.authenticate("alice", secret) is None


# -- events ----------------------------------------------------------------------------------
async def test_a_push_emits_one_event_per_tag_and_a_delete_one_more(tmp_path):
    storage = FilesystemBackend(str(tmp_path))
    repositories = Repositories(storage)
    blobs = Blobs(storage, repositories)
    manifests = Manifests(storage, blobs, repositories)
    heard: list[Event] = []
    manifests.listeners.append(heard.append)
    for data in (CONFIG, LAYER):
        await storage.put_bytes(f"blobs/sha256/{Digest.of_bytes(data).encoded[:2]}/{Digest.of_bytes(data).encoded}", data)
        await blobs.link("acme/app", Digest.of_bytes(data))
    body = json.dumps(image_manifest()).encode()
    digest = Digest.of_bytes(body)

    actor = Actor("alice", "registry.example.com")
    await manifests.put("acme/app", Reference(digest=digest), body, None, tags=["v1", "latest"], actor=actor)
    assert [(e.kind, e.tag, e.digest, e.pusher, e.registry) for e in heard] == [
        ("push", "v1", str(digest), "alice", "registry.example.com"),
        ("push", "latest", str(digest), "alice", "registry.example.com"),
    ]
    await manifests.delete("acme/app", Reference(tag="v1"), actor=actor)
    assert (heard[-1].kind, heard[-1].tag, heard[-1].digest) == ("delete", "v1", None)
    with pytest.raises(errors.ManifestUnknown):
        await manifests.delete("acme/app", Reference(tag="v1"), actor=actor)
    assert len(heard) == 3, "a failed delete tells nobody"


async def test_a_stream_is_batched_by_size_without_copying_a_byte():
    from storage_backends.base import MAX_BATCH_PIECES, batched

    async def pieces(sizes: list[int]):
        for index, size in enumerate(sizes):
            yield bytes([index % 256]) * size

    sizes = [300, 0, 500, 250, 10, 0, 990, 5]
    got = [batch async for batch in batched(pieces(sizes), size=1000)]
    assert [[len(piece) for piece in batch] for batch in got] == [[300, 500, 250], [10, 990], [5]]
    source = [bytes([n]) * 3 for n in range(5)]

    async def same():
        for piece in source:
            yield piece

    assert [piece for batch in [b async for b in batched(same(), size=6)] for piece in batch] == source
    assert all(a is b for a, b in zip([p for batch in [b async for b in batched(same(), size=6)] for p in batch], source))
    many = [len(batch) async for batch in batched(pieces([1] * (MAX_BATCH_PIECES + 3)), size=1 << 30)]
    assert many == [MAX_BATCH_PIECES, 3]  # writev takes a bounded number of pieces


def test_writes_start_their_writeback_at_once_so_the_final_fsync_waits_for_little(tmp_path):
    """sync_file_range is bound with the right argument types: a wrong binding fails with
    EINVAL, and the early writeback would silently do nothing."""
    import os

    from storage_backends import filesystem

    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT)
    try:
        filesystem._write_all(fd, [os.urandom(1 << 20)])
        assert filesystem._start_writeback(fd), f"sync_file_range failed: {os.strerror(__import__('ctypes').get_errno())}"
    finally:
        os.close(fd)


def test_pieces_are_written_whole_and_in_order_when_writev_writes_less(tmp_path, monkeypatch):
    """A short write (a full disk's first symptom, a signal) cannot be caused at will: writev is
    made to take at most 7 bytes per call."""
    import os

    from storage_backends import filesystem

    real_writev = os.writev

    def short_writev(fd, buffers):
        budget, taken = 7, []
        for buffer in buffers:
            if budget == 0:
                break
            taken.append(memoryview(buffer)[:budget])
            budget -= len(taken[-1])
        return real_writev(fd, taken)

    monkeypatch.setattr(filesystem.os, "writev", short_writev)
    pieces = [b"alpha", b"", b"beta-gamma", b"d", b"epsilon" * 3]
    target = tmp_path / "out"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        filesystem._write_all(fd, pieces)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"".join(pieces)


# -- the metadata database's SQL ------------------------------------------------------------------
def test_named_parameters_become_numbered_ones_for_asyncpg_and_keep_casts_and_strings_alone():
    from registry.core.metadata.sql import numbered

    text, names = numbered("SELECT :b::text, x FROM t WHERE a = :a OR b = :b AND c = '12:30'")
    assert text == "SELECT $1::text, x FROM t WHERE a = $2 OR b = $1 AND c = '12:30'"
    assert names == ("b", "a")


def test_a_list_parameter_is_one_parameter_per_item_and_an_empty_one_is_refused():
    from registry.core.metadata.sql import expand_lists

    sql, params = expand_lists("SELECT * FROM t WHERE name IN (:names) AND n = :names_count", {"names": ["a", "b"], "names_count": 2})
    assert sql == "SELECT * FROM t WHERE name IN (:names_0, :names_1) AND n = :names_count"
    assert params == {"names_0": "a", "names_1": "b", "names_count": 2}
    with pytest.raises(ValueError, match="empty"):
        expand_lists("SELECT 1 WHERE x IN (:names)", {"names": []})


def test_a_multi_row_insert_names_each_value_once_and_a_command_tag_gives_the_row_count():
    from registry.core.metadata.sql import changed_rows, like_escaped, values_clause

    values, params = values_clause(("name", "user"), [{"name": "a", "user": "u1"}, {"name": "b", "user": "u2"}])
    assert values == "(:c_0_0, :c_1_0), (:c_0_1, :c_1_1)"
    assert params == {"c_0_0": "a", "c_1_0": "u1", "c_0_1": "b", "c_1_1": "u2"}
    assert [changed_rows(tag) for tag in ("INSERT 0 3", "UPDATE 1", "DELETE 0", "SELECT")] == [3, 1, 0, 0]
    assert like_escaped("50%_of\\it") == "50\\%\\_of\\\\it"
