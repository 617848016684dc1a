"""The local image store (`client.store`), on real files: blobs and resumable ingest, names and
rmi, layer unpacking (whiteouts, escapes refused), several processes at once, kill -9, and an
OCI-layout view that skopeo reads."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from client.store import (
    AmbiguousReference,
    BlobNotFound,
    DigestMismatch,
    ImageConflict,
    ImageStore,
    InvalidImage,
    InvalidStoreReference,
    NoSuchImage,
    SnapshotMissing,
    UnsafeLayer,
    chain_ids,
)
from client.store.unpack import apply_tar
from ocispec import mediatypes
from tests import images as busybox
from tests.layers import (
    MTIME,
    Tar,
    app_tar,
    base_tar,
    concurrent_worker,
    listing,
    make_image,
    many_files_tar,
    partial_ingest_worker,
    put_image,
    remove_worker,
    sha256,
    tree_files,
    unpack_worker,
    wait_for,
)

APP = "localhost:5000/acme/app:1.0"
IS_ROOT = os.geteuid() == 0
spawn = multiprocessing.get_context("spawn")


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


def snapshot_names(store: ImageStore) -> list[str]:
    return listing(store.root / "snapshots")


def merged(store: ImageStore, image: object, dest: Path) -> dict[str, busybox.FsEntry]:
    store.materialize(image, dest)  # type: ignore[arg-type]
    return busybox.read_tree(dest)


def oracle(tars: list[bytes]) -> dict[str, busybox.FsEntry]:
    """What the layers stack to, by tests/images.py's independent reading of the image-spec."""
    return busybox.flatten([busybox.Layer.from_tar(tar) for tar in tars])


# -- blobs -----------------------------------------------------------------------------------------


def test_write_blob_is_content_addressed_atomic_and_deduplicated(store: ImageStore) -> None:
    data = b'{"hello": "world"}'
    digest = store.write_blob(data)
    assert digest == sha256(data)
    assert store.write_blob(data, digest) == digest
    path = store.blob_path(digest)
    assert path == store.root / "blobs" / "sha256" / digest.split(":")[1]
    assert path.read_bytes() == data and store.read_blob(digest) == data and store.blob_size(digest) == len(data)
    assert os.listdir(store.root / "blobs" / "sha256") == [digest.split(":")[1]]
    assert not [name for name in os.listdir(store.root / "ingest") if not name.endswith(".partial")]

    with pytest.raises(DigestMismatch):
        store.write_blob(b"other bytes", digest)
    assert not store.has_blob(sha256(b"other bytes"))
    missing = sha256(b"missing")
    assert not store.has_blob(missing)
    with pytest.raises(BlobNotFound, match=missing):
        store.blob_path(missing)
    with pytest.raises(InvalidStoreReference):
        store.has_blob("sha256:../../etc/passwd")


def test_ingest_resumes_a_partial_and_the_digest_covers_the_resumed_prefix(store: ImageStore) -> None:
    data = os.urandom(300_000)
    digest = sha256(data)
    with store.ingest(digest) as ingest:
        assert ingest.offset == 0 and not ingest.exists
        ingest.write(data[:100_000])
        # left without commit, as when a connection breaks
    partial = store.root / "ingest" / f"{digest.split(':')[1]}.partial"
    assert partial.stat().st_size == 100_000
    assert not store.has_blob(digest)

    with store.ingest(digest, len(data)) as ingest:
        assert ingest.offset == 100_000
        ingest.write(data[100_000:])
        ingest.commit()
    assert store.read_blob(digest) == data
    assert not partial.exists()
    assert listing(store.root / "locks") == []

    with store.ingest(digest) as ingest:  # already there: nothing to download
        assert ingest.exists and ingest.offset == len(data)
        ingest.commit()

    other = os.urandom(1000)
    partial = store.root / "ingest" / f"{sha256(other).split(':')[1]}.partial"
    partial.write_bytes(os.urandom(2000))  # longer than the blob can be: useless
    with store.ingest(sha256(other), len(other)) as ingest:
        assert ingest.offset == 0
        ingest.write(other)
        ingest.commit()
    assert store.read_blob(sha256(other)) == other


def test_ingest_digest_mismatch_deletes_the_partial_and_raises(store: ImageStore) -> None:
    data = b"the real blob" * 1000
    digest = sha256(data)
    with store.ingest(digest) as ingest:
        ingest.write(b"something else entirely")
        with pytest.raises(DigestMismatch, match=digest):
            ingest.commit()
    assert not store.has_blob(digest)
    assert listing(store.root / "ingest") == []
    with store.ingest(digest, len(data)) as ingest:
        assert ingest.offset == 0
        with pytest.raises(DigestMismatch, match="more than its size"):
            ingest.write(data + b"x")
        ingest.write(data)
        ingest.commit()
    assert store.read_blob(digest) == data


def test_a_download_killed_mid_write_is_resumed_by_the_next_ingest(store: ImageStore) -> None:
    data = os.urandom(200_000)
    digest = sha256(data)
    ready = spawn.Event()
    child = spawn.Process(target=partial_ingest_worker, args=(str(store.root), digest, data[:70_000], ready))
    child.start()
    try:
        assert ready.wait(30), "the child never wrote its partial"
        # While the child holds the blob's ingest lock, another ingest waits for it.
        entered = threading.Event()
        offsets: list[int] = []

        def second_download() -> None:
            with store.ingest(digest) as ingest:
                entered.set()
                offsets.append(ingest.offset)
                ingest.write(data[ingest.offset :])
                ingest.commit()

        thread = threading.Thread(target=second_download)
        thread.start()
        assert not entered.wait(0.3), "a second ingest got in while the first held the lock"
        os.kill(child.pid, signal.SIGKILL)
        thread.join(10)
        assert offsets == [70_000]
    finally:
        child.kill()
        child.join()
    assert store.read_blob(digest) == data
    assert listing(store.root / "ingest") == []


# -- images, names, rmi ------------------------------------------------------------------------------


def test_add_image_tag_resolve_and_images(store: ImageStore) -> None:
    image = make_image([base_tar(), app_tar("one")], created="2024-02-03T04:05:06.123456789Z")
    record = put_image(store, APP, image)
    assert record.names == (APP,)
    assert record.id == record.config_digest == image.config_digest
    assert record.manifest_digest == image.digest
    assert record.size == sum(len(layer) for layer in image.layers)
    assert record.created == "2024-02-03T04:05:06.123456789Z"
    assert record.created_at is not None and record.created_at.year == 2024
    assert [layer.digest for layer in record.layers] == image.layer_digests
    assert record.chain_ids == chain_ids([sha256(t) for t in image.tars])

    for reference in (
        APP,
        record.id,
        record.id.split(":")[1],
        record.short_id,
        "sha256:" + record.short_id,
        f"localhost:5000/acme/app@{image.digest}",
        f"localhost:5000/acme/app:1.0@{image.digest}",
    ):
        assert store.resolve(reference).manifest_digest == image.digest, reference
    for unknown in ("localhost:5000/acme/app:2.0", "localhost:5000/other/app:1.0", "ffffffffffff", f"other.io/x@{image.digest}"):
        with pytest.raises(NoSuchImage, match="No such image"):
            store.resolve(unknown)

    store.tag(APP, "localhost:5000/acme/app:latest")
    store.tag(record.short_id, "registry.example.com:443/team/app:prod")
    names = {"localhost:5000/acme/app:1.0", "localhost:5000/acme/app:latest", "registry.example.com:443/team/app:prod"}
    assert set(store.resolve("localhost:5000/acme/app:latest").names) == names
    assert store.config(record)["rootfs"]["diff_ids"] == [sha256(t) for t in image.tars]
    assert store.manifest(record)["config"]["digest"] == image.config_digest

    [listed] = store.images()
    assert listed.id == record.id and set(listed.names) == names and listed.size == record.size

    index = json.loads((store.root / "index.json").read_text())
    assert {entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index["manifests"]} == names
    assert {entry["digest"] for entry in index["manifests"]} == {image.digest}
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}

    with pytest.raises(InvalidStoreReference):
        store.tag(APP, f"localhost:5000/acme/app@{image.digest}")
    for bad in ("app:1.0", "localhost:5000/acme/app", "localhost:5000/Acme/app:1", "localhost:5000/acme/app:-x"):
        with pytest.raises(InvalidStoreReference):
            store.add_image(bad, image.digest)


def test_add_image_refuses_indexes_missing_blobs_and_mismatched_configs(store: ImageStore) -> None:
    image = make_image([base_tar()])
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [{"mediaType": mediatypes.OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}]}
    ).encode()
    store.write_blob(index)
    with pytest.raises(InvalidImage, match="image index"):
        store.add_image(APP, sha256(index))

    store.write_blob(image.manifest)
    store.write_blob(image.config)
    with pytest.raises(BlobNotFound, match=image.layer_digests[0]):
        store.add_image(APP, image.digest)
    store.write_blob(image.layers[0])
    record = store.add_image(f"localhost:5000/acme/app@{sha256(index)}", image.digest, index_digest=sha256(index))
    assert record.index_digest == sha256(index)
    assert store.resolve(f"localhost:5000/acme/app@{image.digest}").id == image.config_digest

    wrong = make_image([base_tar(), app_tar("x")], diff_ids=[sha256(base_tar())])
    for data in wrong.blobs().values():
        store.write_blob(data)
    with pytest.raises(InvalidImage, match="rootfs.diff_ids has 1"):
        store.add_image(APP, wrong.digest)
    assert store.images() == [record]


def test_two_images_sharing_a_base_layer_rmi_deletes_only_what_is_no_longer_used(store: ImageStore, tmp_path: Path) -> None:
    first = make_image([base_tar(), app_tar("first")], label="first")
    second = make_image([base_tar(), app_tar("second")], label="second")
    a = put_image(store, "localhost:5000/acme/first:1", first)
    b = put_image(store, "localhost:5000/acme/second:1", second)
    store.unpack(a)
    store.unpack(b)
    base_digest, base_chain = first.layer_digests[0], a.chain_ids[0]
    assert second.layer_digests[0] == base_digest and b.chain_ids[0] == base_chain
    assert len(snapshot_names(store)) == 3  # the base layer is unpacked once

    report = store.remove("localhost:5000/acme/first:1")
    assert report.untagged == ["localhost:5000/acme/first:1"]
    assert report.deleted == [first.config_digest, first.layer_digests[1]]
    for gone in (first.digest, first.config_digest, first.layer_digests[1]):
        assert not store.has_blob(gone)
    assert store.has_blob(base_digest)
    assert sorted(snapshot_names(store)) == sorted(c.split(":")[1] for c in b.chain_ids)

    with pytest.raises(NoSuchImage):
        store.resolve("localhost:5000/acme/first:1")
    survivor = store.resolve("localhost:5000/acme/second:1")
    assert store.config(survivor)["config"]["Labels"] == {"test": "second"}
    assert store.manifest(survivor)["layers"][0]["digest"] == base_digest
    assert store.unpack(survivor) == store.snapshot_dirs(survivor)
    assert merged(store, survivor, tmp_path / "root") == oracle(second.tars)

    report = store.remove(survivor.short_id)
    assert report.untagged == ["localhost:5000/acme/second:1"]
    assert report.deleted == [second.config_digest, second.layer_digests[1], base_digest]
    assert listing(store.root / "blobs" / "sha256") == []
    assert snapshot_names(store) == []
    assert store.images() == []
    assert json.loads((store.root / "index.json").read_text())["manifests"] == []


def test_rmi_of_a_name_only_untags_while_other_names_remain(store: ImageStore) -> None:
    image = make_image([base_tar()])
    record = put_image(store, APP, image)
    store.tag(APP, "localhost:5000/acme/app:latest")
    store.add_image(f"localhost:5000/acme/app@{image.digest}", image.digest)

    report = store.remove(APP)
    assert (report.untagged, report.deleted) == ([APP], [])
    assert store.has_blob(image.layer_digests[0])
    # The last tag of a repository takes the repository's digest names with it, then the image.
    report = store.remove("localhost:5000/acme/app:latest")
    assert report.untagged == ["localhost:5000/acme/app:latest", f"localhost:5000/acme/app@{image.digest}"]
    assert report.deleted == [record.id, image.layer_digests[0]]


def test_rmi_by_id_of_an_image_in_several_repositories_needs_force(store: ImageStore) -> None:
    image = make_image([base_tar()])
    record = put_image(store, APP, image)
    store.tag(APP, "localhost:5000/other/app:1.0")
    with pytest.raises(ImageConflict, match=rf"unable to delete {record.short_id} \(must be forced\) - image is referenced in multiple repositories"):
        store.remove(record.short_id)
    assert store.resolve(APP).id == record.id
    report = store.remove(record.id, force=True)
    assert report.untagged == sorted([APP, "localhost:5000/other/app:1.0"])
    assert report.deleted == [record.id, image.layer_digests[0]]


def test_retagging_a_name_leaves_the_old_image_dangling_until_removed_by_id(store: ImageStore) -> None:
    old = make_image([base_tar(), app_tar("old")], label="old", created="2023-01-01T00:00:00Z")
    new = make_image([base_tar(), app_tar("new")], label="new")
    old_record = put_image(store, APP, old)
    put_image(store, APP, new)
    assert store.resolve(APP).id == new.config_digest
    dangling = store.resolve(old_record.short_id)
    assert dangling.names == ()
    assert [image.id for image in store.images()] == [new.config_digest, old.config_digest]
    index = json.loads((store.root / "index.json").read_text())["manifests"]
    assert [entry.get("annotations") for entry in index if entry["digest"] == old.digest] == [None]

    report = store.remove(old_record.id)
    assert (report.untagged, report.deleted) == ([], [old.config_digest, old.layer_digests[1]])
    assert store.has_blob(old.layer_digests[0])


def test_an_ambiguous_image_id_prefix_is_refused(store: ImageStore) -> None:
    images = {}
    label = 0
    while True:  # two configs whose IDs share a first hex digit
        image = make_image([], label=str(label))
        label += 1
        first = image.config_digest[7]
        if first in images:
            break
        images[first] = image
    put_image(store, "localhost:5000/acme/a:1", images[first])
    put_image(store, "localhost:5000/acme/b:1", image)
    with pytest.raises(AmbiguousReference, match="matches 2 images"):
        store.resolve(first)
    assert store.resolve(image.config_digest[7:20]).id == image.config_digest


# -- unpacking ---------------------------------------------------------------------------------------


def whiteout_layers() -> list[bytes]:
    base = (
        Tar()
        .dir("a").file("a/1", b"a1").file("a/2", b"a2")
        .dir("b").file("b/x", b"bx").dir("b/sub").file("b/sub/y", b"by")
        .file("c", b"c")
        .symlink("l", "c")
        .dir("d").file("d/keep", b"keep")
        .build()
    )
    second = (
        Tar()
        .whiteout("c")  # a file
        .whiteout("l")  # a symlink
        .dir("a")
        .whiteout("a/1")
        .dir("b")
        .opaque("b")  # b's lower contents hidden, its own new file kept
        .file("b/z", b"bz")
        .file("new", b"new")
        .whiteout("d")  # d deleted in the layers below, re-created in this layer
        .dir("d", 0o700)
        .file("d/fresh", b"fresh")
        .build()
    )
    third = Tar().whiteout("a").file("c", b"c is back").build()
    return [base, second, third]


def test_unpack_applies_whiteouts_and_opaque_directories(store: ImageStore, tmp_path: Path) -> None:
    tars = whiteout_layers()
    record = put_image(store, APP, make_image(tars))
    dirs = store.unpack(record)
    assert dirs == [store.root / "snapshots" / c.split(":")[1] / "fs" for c in record.chain_ids]
    assert store.unpack(record) == dirs  # idempotent

    tree = merged(store, record, tmp_path / "root")
    assert tree == oracle(tars)
    assert set(tree) == {"b", "b/z", "c", "d", "d/fresh", "new"}
    assert tree["d"].mode == 0o700

    # The second layer in overlayfs form: whiteouts are 0/0 character devices, opaque dirs marked.
    second = dirs[1]
    for whiteout in ("c", "l", "a/1"):
        st = (second / whiteout).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, whiteout
    meta = json.loads((second.parent / "snapshot.json").read_text())
    assert meta["whiteouts"] == ["a/1", "c", "l"]
    assert meta["opaque"] == ["b", "d"]
    assert os.getxattr(second / "b", "user.overlay.opaque") == b"y"
    if IS_ROOT:
        assert os.getxattr(second / "d", "trusted.overlay.opaque") == b"y"
    assert not (second / ".wh.c").exists() and not (second / "b" / ".wh..wh..opq").exists()


def test_snapshot_dirs_stacked_by_overlayfs_give_the_root_filesystem(store: ImageStore, tmp_path: Path) -> None:
    assert IS_ROOT, "mounting overlayfs needs root; the suite runs as root (as CI does)"
    tars = whiteout_layers()
    record = put_image(store, APP, make_image(tars))
    dirs = store.unpack(record)
    assert store.overlay_ready(record)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    lower = ":".join(str(d) for d in reversed(dirs))
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(mountpoint)], capture_output=True)
    assert mount.returncode == 0, f"overlayfs mount failed: {mount.stderr.decode().strip()}"
    try:
        assert busybox.read_tree(mountpoint) == oracle(tars)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_layers_unpack_from_each_compression(store: ImageStore, tmp_path: Path, compression: str) -> None:
    tars = [base_tar(), app_tar(compression, files=20)]
    image = make_image(tars, compression)
    assert image.layers[0][:2] == b"\x1f\x8b" if compression == "gzip" else True
    record = put_image(store, APP, image)
    assert merged(store, record, tmp_path / "root") == oracle(tars)


def test_a_layer_whose_content_does_not_match_its_diff_id_is_refused(store: ImageStore) -> None:
    tars = [base_tar()]
    image = make_image(tars, diff_ids=[sha256(app_tar("lie"))])
    record = put_image(store, APP, image)
    with pytest.raises(DigestMismatch, match=rf"{image.layer_digests[0]}.*rootfs.diff_ids says {sha256(app_tar('lie'))}"):
        store.unpack(record)
    assert snapshot_names(store) == []
    with pytest.raises(SnapshotMissing):
        store.snapshot_dirs(record)


def test_unpack_preserves_modes_owners_mtimes_symlinks_and_hardlinks(store: ImageStore, tmp_path: Path) -> None:
    tar = (
        Tar()
        .dir("srv", 0o750, uid=1000, gid=1001, mtime=MTIME + 1)
        .file("srv/run", b"#!/bin/sh\n", 0o4755, uid=1000, gid=1001, mtime=MTIME + 2)
        .hardlink("srv/run-again", "srv/run")
        .symlink("srv/link", "run", uid=1000, gid=1001, mtime=MTIME + 3)
        .dir("readonly", 0o555)
        .file("readonly/file", b"ro", 0o444)
        .fifo("srv/pipe", 0o600)
        .build()
    )
    record = put_image(store, APP, make_image([tar]))
    [fs] = store.unpack(record)
    root = tmp_path / "root"
    store.materialize(record, root)
    for tree in (fs, root):
        run, again, link = (tree / "srv/run").lstat(), (tree / "srv/run-again").lstat(), (tree / "srv/link").lstat()
        assert stat.S_IMODE(run.st_mode) == 0o4755 and run.st_mtime == MTIME + 2
        assert (run.st_ino, run.st_nlink) == (again.st_ino, 2)
        assert os.readlink(tree / "srv/link") == "run" and link.st_mtime == MTIME + 3
        srv = (tree / "srv").stat()
        assert stat.S_IMODE(srv.st_mode) == 0o750 and srv.st_mtime == MTIME + 1
        assert stat.S_IMODE((tree / "readonly").stat().st_mode) == 0o555
        assert stat.S_ISFIFO((tree / "srv/pipe").lstat().st_mode)
        if IS_ROOT:
            assert (run.st_uid, run.st_gid, srv.st_uid, link.st_uid) == (1000, 1001, 1000, 1000)
    store.remove(APP)  # read-only directories included
    assert snapshot_names(store) == []


def test_device_files_are_refused_unless_root(tmp_path: Path) -> None:
    tar = Tar().dir("dev").device("dev/null", 1, 3).build()
    (tmp_path / "as-user").mkdir()
    with pytest.raises(UnsafeLayer, match="'dev/null'.*device files can only be unpacked as root"):
        apply_tar(io.BytesIO(tar), tmp_path / "as-user", privileged=False)
    if IS_ROOT:
        (tmp_path / "as-root").mkdir()
        apply_tar(io.BytesIO(tar), tmp_path / "as-root", privileged=True)
        assert (tmp_path / "as-root/dev/null").lstat().st_rdev == os.makedev(1, 3)


def escape_layers(outside: Path) -> dict[str, tuple[bytes, str]]:
    """Hostile layers, each with the entry its refusal must name."""
    up = "../" * 12  # far more than the store's depth below tmp_path
    return {
        "absolute path": (Tar().file(f"{outside}/pwned", b"x").build(), f"{outside}/pwned"),
        "dot-dot path": (Tar().file(f"{up}{str(outside).lstrip('/')}/pwned", b"x").build(), f"{up}{str(outside).lstrip('/')}/pwned"),
        "dot-dot inside": (Tar().dir("a").file("a/../../pwned", b"x").build(), "a/../../pwned"),
        "write through an absolute symlink": (
            Tar().symlink("escape", str(outside)).file("escape/pwned", b"x").build(),
            "escape/pwned",
        ),
        "write through a relative symlink": (
            Tar().symlink("up", up.rstrip("/")).file(f"up{outside}/pwned", b"x").build(),
            f"up{outside}/pwned",
        ),
        "directory through a symlink": (
            Tar().symlink("escape", str(outside)).dir("escape/sub").build(),
            "escape/sub",
        ),
        "hardlink to an absolute path": (
            Tar().hardlink("stolen", f"{outside}/secret").build(),
            "stolen",
        ),
        "hardlink climbing out": (
            Tar().hardlink("stolen", f"{up}{str(outside).lstrip('/')}/secret").build(),
            "stolen",
        ),
        "hardlink through a symlink": (
            Tar().symlink("escape", str(outside)).hardlink("stolen", "escape/secret").build(),
            "stolen",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "absolute path",
        "dot-dot path",
        "dot-dot inside",
        "write through an absolute symlink",
        "write through a relative symlink",
        "directory through a symlink",
        "hardlink to an absolute path",
        "hardlink climbing out",
        "hardlink through a symlink",
    ],
)
def test_layer_entries_escaping_the_root_are_refused(store: ImageStore, tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    before = tree_files(outside)
    tar, entry = escape_layers(outside)[case]
    record = put_image(store, APP, make_image([tar]))
    with pytest.raises(UnsafeLayer) as refused:
        store.unpack(record)
    assert entry in str(refused.value)
    assert record.layers[0].digest in str(refused.value)
    assert tree_files(outside) == before
    assert listing(outside) == ["secret"] and (outside / "secret").stat().st_nlink == 1
    assert snapshot_names(store) == []  # nothing visible, no temp dir left
    if "symlink" in case:
        assert "symlink 'escape'" in str(refused.value) or "symlink 'up'" in str(refused.value)
        assert "outside the root" in str(refused.value)


def test_materialize_replaces_a_lower_symlink_instead_of_writing_through_it(store: ImageStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tars = [Tar().symlink("lib", str(outside)).build(), Tar().dir("lib").file("lib/x", b"x").build()]
    record = put_image(store, APP, make_image(tars))
    tree = merged(store, record, tmp_path / "root")
    assert listing(outside) == []
    assert tree["lib"].kind == "dir" and tree["lib/x"].data == b"x"


def test_materialize_refuses_a_non_empty_destination(store: ImageStore, tmp_path: Path) -> None:
    record = put_image(store, APP, make_image([base_tar()]))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(Exception, match="not empty"):
        store.materialize(record, tmp_path / "busy")


# -- several processes, and kill -9 ----------------------------------------------------------------


def test_concurrent_processes_share_one_store_consistently(store: ImageStore) -> None:
    workers, rounds = 4, 2
    with spawn.Pool(workers) as pool:
        results = pool.starmap(concurrent_worker, [(str(store.root), index, rounds) for index in range(workers)])
    assert [result.error for result in results] == [None] * workers

    state = json.loads((store.root / "dockyard.json").read_text())["images"]
    names = [name for record in state.values() for name in record["names"]]
    assert len(names) == len(set(names))  # a name points at one image
    expected = {name for result in results for name in result.names} | {"localhost:5000/acme/shared:latest"}
    assert set(names) == expected
    images = store.images()
    assert len(images) == workers * rounds
    index = json.loads((store.root / "index.json").read_text())["manifests"]
    assert sorted(entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index) == sorted(expected)

    for record in images:  # every blob an image needs is there and intact
        store.read_blob(record.manifest_digest)  # read_blob verifies the digest
        store.read_blob(record.config_digest)
        for layer in record.layers:
            assert sha256(store.blob_path(layer.digest).read_bytes()) == layer.digest
    base_chain = chain_ids([sha256(base_tar())])[0]
    chains = {chain for record in images for chain in record.chain_ids}
    assert sorted(snapshot_names(store)) == sorted(chain.split(":")[1] for chain in chains)
    assert base_chain in chains and len(chains) == workers * rounds + 1  # the base unpacked once
    assert listing(store.root / "locks") == []

    # Now remove half the images while the other half are unpacked again from scratch.
    for record in images:
        for chain in record.chain_ids[1:]:
            shutil.rmtree(store.root / "snapshots" / chain.split(":")[1])
    doomed = [f"localhost:5000/acme/w{index}:r0" for index in range(workers)]
    kept = [f"localhost:5000/acme/w{index}:r1" for index in range(workers)]
    with spawn.Pool(workers * 2) as pool:
        removals = pool.starmap_async(remove_worker, [(str(store.root), name) for name in doomed])
        unpacks = pool.starmap_async(unpack_worker, [(str(store.root), name) for name in kept])
        assert removals.get(60) == [None] * workers
        unpacks.get(60)
    for name in kept:
        record = store.resolve(name)
        assert all(d.is_dir() for d in store.snapshot_dirs(record))
    assert store.has_blob(images[0].layers[0].digest)
    remaining = {chain for name in kept for chain in store.resolve(name).chain_ids}
    assert sorted(snapshot_names(store)) == sorted(chain.split(":")[1] for chain in remaining)


def test_kill_during_unpack_leaves_no_visible_snapshot_and_the_next_unpack_succeeds(store: ImageStore, tmp_path: Path) -> None:
    tars = [many_files_tar(3000)]
    record = put_image(store, APP, make_image(tars, "gzip"))
    [chain] = record.chain_ids
    final = store.root / "snapshots" / chain.split(":")[1]
    temp_dirs = lambda: [n for n in snapshot_names(store) if n.startswith(".tmp-")]  # noqa: E731

    child = spawn.Process(target=unpack_worker, args=(str(store.root), APP))
    child.start()
    try:
        assert wait_for(lambda: any(len(os.listdir(store.root / "snapshots" / t / "fs" / "data")) > 5 for t in temp_dirs() if (store.root / "snapshots" / t / "fs" / "data").is_dir()))
        assert child.exitcode is None, "the unpack finished before it could be interrupted"
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    finally:
        child.kill()
        child.join()
    assert child.exitcode == -signal.SIGKILL
    assert not final.exists()
    assert len(temp_dirs()) == 1  # the half-unpacked layer, out of sight
    with pytest.raises(SnapshotMissing):
        store.snapshot_dirs(record)

    assert store.unpack(record) == [final / "fs"]
    assert temp_dirs() == []
    assert merged(store, record, tmp_path / "root") == oracle(tars)


# -- the OCI layout view -----------------------------------------------------------------------------


@pytest.mark.usefixtures("skopeo_installed")
def test_skopeo_reads_an_image_out_of_the_store(store: ImageStore, tmp_path: Path) -> None:
    image = busybox.single_image()
    for digest, data in image.blobs().items():
        store.write_blob(data, digest)
    record = store.add_image(APP, image.digest)
    put_image(store, "localhost:5000/acme/other:2", make_image([base_tar()]))
    assert merged(store, record, tmp_path / "root") == image.filesystem()

    out = tmp_path / "copied"
    copy = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", f"oci:{store.root}:{APP}", f"oci:{out}:copied"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert copy.returncode == 0, copy.stderr
    index, blobs = busybox.read_layout(out)
    [entry] = index["manifests"]
    assert entry["digest"] == image.digest
    assert blobs[image.digest] == image.manifest
    assert blobs[image.config_digest] == image.config
    for layer in image.layers:
        assert blobs[layer.digest] == layer.blob
