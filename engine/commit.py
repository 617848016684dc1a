"""`commit`: a container's writable layer as one new layer on top of its image.

The new image's config extends the parent's (rootfs.diff_ids + the new diff ID, history + one
entry with the author, the comment and `created_by` = the container's command), its run config
is the container's (with `--change` instructions applied), and it records the container and
its config, and the parent image (local metadata, as Docker's `Parent`). The manifest keeps the
parent's format (OCI or Docker schema 2) and its layer descriptors byte for byte.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

from client.archive import store_gzip_layer
from client.store import ImageRecord, ImageStore
from ocispec import mediatypes

from .changes import apply_change
from .diff import write_layer
from .records import Container, ContainerFiles

RUN_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                   "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                   "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")  # fmt: skip


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_image(
    store: ImageStore,
    name: str | None,
    *,
    base_config: dict[str, Any] | None,
    run_config: dict[str, Any] | None,
    layers: list[dict[str, Any]],
    diff_ids: list[str],
    history: list[dict[str, Any]],
    extra: dict[str, Any],
    parent: ImageRecord | None = None,
) -> ImageRecord:
    """Config and manifest for `base_config` (None: a new image for this host) plus `layers`
    on top of `parent`'s; stored and recorded under `name` (None: untagged)."""
    import platform as host

    config = dict(base_config or {})
    config.pop("container", None)
    config.pop("container_config", None)
    config.update(extra)
    config["created"] = history[-1]["created"] if history else now_rfc3339()
    config.setdefault("architecture", {"x86_64": "amd64", "aarch64": "arm64"}.get(host.machine(), host.machine()))
    config.setdefault("os", "linux")
    config["config"] = run_config
    rootfs = dict(config.get("rootfs") or {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), *diff_ids]
    config["rootfs"] = rootfs
    config["history"] = [*(config.get("history") or []), *history]
    docker_format = parent is not None and parent.media_type == mediatypes.DOCKER_MANIFEST
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = store.write_blob(config_bytes)
    parent_layers = [layer.model_dump(by_alias=True, exclude_none=True) for layer in parent.layers] if parent else []
    if docker_format:
        layers = [{**layer, "mediaType": mediatypes.DOCKER_LAYER_GZIP} for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST if docker_format else mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.DOCKER_CONFIG if docker_format else mediatypes.OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [*parent_layers, *layers],
    }
    manifest_digest = store.write_blob(json.dumps(manifest, indent=2).encode())
    record = store.add_image(name, manifest_digest, parent=parent.config_digest if parent else None)
    store.unpack(record)
    return record


def commit_container(
    store: ImageStore,
    container: Container,
    files: ContainerFiles,
    parent: ImageRecord,
    name: str | None,
    *,
    author: str = "",
    comment: str = "",
    changes: list[str] | None = None,
    run_config: dict[str, Any] | None = None,
    image_config: dict[str, Any] | None = None,
    container_config: dict[str, Any] | None = None,
    created_by: str | None = None,
) -> ImageRecord:
    """The container's changes as a new image (synchronous: call it in a worker thread).

    The run config is the container's, updated by `run_config` and `changes`, unless
    `image_config` gives it whole (a build step's). A container that changed nothing adds no
    layer: its history entry is an `empty_layer`, as Docker records it.
    """
    changed = any(os.scandir(files.upper))
    layers: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    if changed:
        layer, diff_id = store_gzip_layer(store, lambda out: write_layer(files.upper, out))
        layers, diff_ids = [layer], [diff_id]
    if image_config is not None:
        new_config = dict(image_config)
    else:
        new_config = {key: container.Config.get(key) for key in RUN_CONFIG_KEYS if key in container.Config}
        if run_config:
            new_config.update(run_config)
        for change in changes or []:
            new_config = apply_change(new_config, change)
    parent_config = store.config(parent)
    entry: dict[str, Any] = {
        "created": now_rfc3339(),
        "created_by": created_by if created_by is not None else " ".join([container.Path, *container.Args]).strip(),
    }
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    if not changed:
        entry["empty_layer"] = True
    extra: dict[str, Any] = {"container": container.Id, "container_config": container_config or container.Config}
    extra["author"] = author or parent_config.get("author") or ""
    if comment:
        extra["comment"] = comment
    else:
        parent_config.pop("comment", None)
    return write_image(
        store, name, base_config=parent_config, run_config=new_config, layers=layers, diff_ids=diff_ids,
        history=[entry], extra=extra, parent=parent,
    )  # fmt: skip
