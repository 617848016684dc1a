"""Images through the daemon: resolve, list, inspect, history, tag, remove, pull, push, import.

A thin layer over `client.store.ImageStore` and the registry client (`client.pull`,
`client.push`) that speaks in the Engine API's shapes. The store is synchronous file I/O:
every call runs in a worker thread. Names are what the user typed (`busybox`,
`localhost:5000/acme/app:1`, an image ID or its prefix), normalised with the client's
reference rules (`docker.io/library/` for bare names), as dockerd does.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone
from typing import IO, Any

from client.auth import Credentials
from client.errors import ClientError
from client.image_documents import history_steps, inspect_document
from client.registry_http import ClientSettings
from client.store import ImageRecord, ImageStore
from client.store.errors import ImageConflict, NoSuchImage, StoreError
from ocispec.names import familiar
from ocispec.reference import ImageReference, InvalidReference

from .errors import Conflict, EngineError, InvalidParameter, NotFound


class ImageService:
    def __init__(self, store: ImageStore, settings: ClientSettings) -> None:
        self.store = store
        self.settings = settings

    # -- names ---------------------------------------------------------------------------------

    def reference(self, text: str, *, default_tag: str | None = "latest") -> ImageReference:
        try:
            return ImageReference.parse(text, default_registry=self.settings.default_registry, default_tag=default_tag)
        except InvalidReference as error:
            raise InvalidParameter(str(error)) from None

    def _locate(self, text: str) -> str:
        """The store key for `text`: its full name when it parses as one the store has, else itself."""
        with contextlib.suppress(ClientError):
            name = str(ImageReference.parse(text, default_registry=self.settings.default_registry))
            with contextlib.suppress(LookupError):
                self.store.resolve(name)
                return name
        return text

    def resolve_sync(self, text: str) -> ImageRecord:
        try:
            return self.store.resolve(self._locate(text))
        except NoSuchImage:
            raise NotFound(f"No such image: {text}") from None
        except StoreError as error:
            raise InvalidParameter(str(error)) from None

    async def resolve(self, text: str) -> ImageRecord:
        return await asyncio.to_thread(self.resolve_sync, text)

    # -- listing -------------------------------------------------------------------------------

    def unpacked_size(self, record: ImageRecord) -> int:
        """The uncompressed size Docker shows (its layers' unpacked bytes), else the compressed one."""
        total = 0
        for chain in record.chain_ids:
            snapshot = self.store.snapshot(chain)
            if snapshot is None:
                return record.size
            total += int(snapshot.meta.get("size") or 0)
        return total

    async def list(self, *, all: bool = False, reference: str | None = None, dangling: bool | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.store.images)
        children = {record.parent for record in records if record.parent}
        out = []
        for record in records:
            if not all and not record.names and record.config_digest in children:
                continue  # an intermediate image (a parent), hidden as docker hides them
            if dangling is True and record.names:
                continue
            if dangling is False and not record.names:
                continue
            names = [name for name in record.names if not reference or _name_matches(name, reference)]
            if reference and not names:
                continue
            # with a reference filter, dockerd lists only the names that match it
            tags = [familiar(name) for name in names if "@" not in name]
            digests = [familiar(name) for name in names if "@" in name]
            size = await asyncio.to_thread(self.unpacked_size, record)
            out.append(
                {
                    "Id": record.id,
                    "ParentId": record.parent or "",
                    "RepoTags": tags or None,
                    "RepoDigests": digests or None,
                    "Created": _unix(record.created),
                    "Size": size,
                    "VirtualSize": size,
                    "SharedSize": -1,
                    "Labels": ((await asyncio.to_thread(self.store.image_config, record)).runtime_as_stored or {}).get("Labels"),
                    "Containers": -1,
                }
            )
        return out

    async def inspect(self, text: str) -> dict[str, Any]:
        record = await self.resolve(text)
        config = await asyncio.to_thread(self.store.image_config, record)
        document = inspect_document(record, config)
        extra = config.model_extra or {}
        document["Parent"] = record.parent or ""
        document["Container"] = extra.get("container") or ""
        document["ContainerConfig"] = extra.get("container_config") or _empty_config()
        document["Size"] = document["VirtualSize"] = await asyncio.to_thread(self.unpacked_size, record)
        snapshots = [self.store.snapshot(chain) for chain in reversed(record.chain_ids)]
        lower = [str(snapshot.fs) for snapshot in snapshots if snapshot is not None]
        document["GraphDriver"] = {"Name": "overlay2", "Data": {"LowerDir": ":".join(lower[1:]), "UpperDir": lower[0] if lower else ""}}
        ordered = {key: document[key] for key in (
            "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container", "ContainerConfig",
            "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver",
            "RootFS", "Metadata") if key in document}  # fmt: skip
        ordered.update({key: value for key, value in document.items() if key not in ordered})
        return ordered

    async def history(self, text: str) -> list[dict[str, Any]]:
        record = await self.resolve(text)
        config = await asyncio.to_thread(self.store.image_config, record)
        sizes = []
        for chain, layer in zip(record.chain_ids, record.layers):
            snapshot = self.store.snapshot(chain)
            sizes.append(int(snapshot.meta.get("size") or 0) if snapshot is not None else layer.size)
        steps = history_steps(config, sizes)
        tags = [familiar(name) for name in record.repo_tags]
        out = []
        for index, step in enumerate(steps):
            out.append(
                {
                    "Id": record.id if index == 0 else "<missing>",
                    "Created": _unix(step["created"]),
                    "CreatedBy": step["created_by"],
                    "Tags": tags if index == 0 else None,
                    "Size": step["size"],
                    "Comment": step["comment"],
                }
            )
        return out

    # -- names and removal ---------------------------------------------------------------------

    async def tag(self, source: str, repo: str, tag: str | None) -> None:
        target = self.reference(f"{repo}:{tag}" if tag else repo)
        if target.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        record = await self.resolve(source)
        await asyncio.to_thread(self.store.tag, record.manifest_digest, str(target))

    async def remove(self, text: str, *, force: bool = False) -> list[dict[str, str]]:
        key = await asyncio.to_thread(self._locate, text)
        try:
            report = await asyncio.to_thread(self.store.remove, key, force)
        except NoSuchImage:
            raise NotFound(f"No such image: {text}") from None
        except ImageConflict as error:
            raise Conflict(str(error)) from None
        except StoreError as error:
            raise InvalidParameter(str(error)) from None
        return [{"Untagged": familiar(name)} for name in report.untagged] + [{"Deleted": digest} for digest in report.deleted]

    # -- registries ----------------------------------------------------------------------------

    async def pull(self, text: str, *, platform: str | None, credentials: Credentials | None, progress: Any = None) -> ImageRecord:
        from client.pull import pull

        reference = self.reference(text)
        try:
            record = await pull(reference, self.store, platform=platform, progress=progress, settings=self.settings, credentials=credentials)
        except ClientError as error:
            raise _registry_error(error) from None
        await asyncio.to_thread(self.store.unpack, record)
        return record

    async def push(self, text: str, *, credentials: Credentials | None, progress: Any = None) -> str:
        from client.push import push

        reference = self.reference(text)
        await self.resolve(str(reference))  # NotFound before any network traffic
        try:
            return await push(str(reference), self.store, progress=progress, settings=self.settings, credentials=credentials)
        except ClientError as error:
            raise _registry_error(error) from None

    # -- import, save, load --------------------------------------------------------------------

    def import_rootfs(self, stream: IO[bytes], reference: str | None, *, changes: list[str], message: str) -> ImageRecord:
        """`docker import`: a root filesystem tar (plain or compressed) as a one-layer image."""
        from client.archive import store_gzip_layer
        from client.store.unpack import open_decompressed

        from .changes import apply_change
        from .commit import write_image

        def fill(out: IO[bytes]) -> None:
            source = open_decompressed(stream)[1]
            while chunk := source.read(1 << 20):
                out.write(chunk)

        layer, diff_id = store_gzip_layer(self.store, fill)
        run_config: dict[str, Any] = {}
        for change in changes:
            run_config = apply_change(run_config, change)
        history = {"created": _now(), "created_by": "", "comment": message or "Imported from -"}
        name = str(self.reference(reference)) if reference else None
        return write_image(self.store, name, base_config=None, run_config=run_config or None,
                           layers=[layer], diff_ids=[diff_id], history=[history], extra={})  # fmt: skip

    async def save(self, names: list[str], out: IO[bytes]) -> None:
        from client.archive import SaveEntry, save_archive

        entries = []
        for text in names:
            key = await asyncio.to_thread(self._locate, text)
            record = await self.resolve(text)
            tags = [key] if key in record.repo_tags else sorted(record.repo_tags)
            entries.append(SaveEntry(record, tuple(familiar(name) for name in tags)))
        await asyncio.to_thread(save_archive, self.store, entries, out)

    def load(self, stream: IO[bytes]) -> list[str]:
        from client.archive import ArchiveError, load_from_stream

        try:
            loaded = load_from_stream(self.store, stream, default_registry=self.settings.default_registry)
        except ArchiveError as error:
            raise InvalidParameter(str(error)) from None
        lines = []
        for image in loaded:
            if image.repo_tags:
                lines += [f"Loaded image: {tag}" for tag in image.repo_tags]
            else:
                lines.append(f"Loaded image ID: {image.image_id}")
        return lines


def _registry_error(error: ClientError) -> EngineError:
    from client.errors import ImageNotFound, RegistryError

    if isinstance(error, ImageNotFound):
        return NotFound(str(error))
    if isinstance(error, RegistryError) and error.status in (401, 403):
        return EngineError(str(error))
    return EngineError(str(error))


def _name_matches(name: str, wanted: str) -> bool:
    shown = familiar(name)
    if ":" in wanted.rsplit("/", 1)[-1]:
        return shown == wanted or name == wanted
    return shown.rsplit(":", 1)[0] == wanted or name.rsplit(":", 1)[0] == wanted


def _unix(text: str | None) -> int:
    from client.human import parse_time

    parsed = parse_time(text)
    return int(parsed.timestamp()) if parsed is not None and parsed.year > 1 else 0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _empty_config() -> dict[str, Any]:
    return {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
            "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}  # fmt: skip

