"""An image as `docker image inspect` and `docker history` describe it: shared by the
daemonless CLI and the engine's API, from the store's record and the parsed image config."""

from __future__ import annotations

from typing import Any

from ocispec.image_config import ImageConfig
from ocispec.names import familiar

from .store.images import ImageRecord


def inspect_document(record: ImageRecord, config: ImageConfig) -> dict[str, Any]:
    """`docker image inspect`'s fields, from the store's record and the image config."""
    document: dict[str, Any] = {
        "Id": record.id,
        "RepoTags": [familiar(name) for name in record.repo_tags],
        "RepoDigests": [familiar(name) for name in record.repo_digests],
        "Parent": "",
        "Comment": config.comment,
        "Created": config.created,
        "DockerVersion": config.docker_version,
        "Author": config.author,
        "Config": config.runtime_as_stored,
        "Architecture": config.architecture,
    }
    if config.variant:
        document["Variant"] = config.variant
    document["Os"] = config.os
    if config.os_version:
        document["OsVersion"] = config.os_version
    document.update(
        {
            "Size": record.size,
            "RootFS": {"Type": config.rootfs_type, "Layers": list(record.diff_ids)},
            "Metadata": {"LastTagTime": record.added or "0001-01-01T00:00:00Z"},
            "Descriptor": {"mediaType": record.media_type, "digest": record.manifest_digest, "size": record.manifest_size},
        }
    )
    return document


def history_steps(config: ImageConfig, layer_sizes: list[int]) -> list[dict[str, Any]]:
    """The config's history, newest first, each non-empty step given the size of its layer (in
    order); layers that no history entry accounts for get a step of their own."""
    steps = []
    layers = iter(layer_sizes)
    for entry in config.history:
        size = 0 if entry.empty_layer else next(layers, 0)
        steps.append({"created": entry.created or None, "created_by": entry.created_by, "size": size, "comment": entry.comment})
    for size in layers:
        steps.append({"created": None, "created_by": "", "size": size, "comment": ""})
    return steps[::-1]
