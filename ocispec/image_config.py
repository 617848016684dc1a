"""The image config (image-spec config.md, and Docker's identical v1 image JSON), read once.

Read leniently: a field of the wrong type is taken as absent, so one odd value in a config
written by some other tool never hides the rest (the web page, `inspect`, `history`). What an
image cannot do without — the diff IDs of its layers — is checked strictly by `diff_ids()`.
"""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from .digest import Digest, InvalidDigest


class InvalidImageConfig(ValueError):
    """The bytes are no image config, or one without usable `rootfs.diff_ids`."""


def _or_absent(default: Any) -> WrapValidator:
    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return copy.copy(default)  # never one shared {} for every config

    return WrapValidator(validate)


Text = Annotated[str, Strict(), _or_absent("")]
Flag = Annotated[bool, Strict(), _or_absent(False)]
Words = Annotated[list[str] | None, _or_absent(None)]
Mapping = Annotated[dict[str, Any], _or_absent({})]
StringMapping = Annotated[dict[str, str], _or_absent({})]


class RuntimeConfig(BaseModel):
    """The `config` object: how a container of the image runs (Docker's names, as stored)."""

    model_config = ConfigDict(extra="allow")

    User: Text = ""
    Env: Words = None
    Entrypoint: Words = None
    Cmd: Words = None
    WorkingDir: Text = ""
    Labels: StringMapping = {}
    ExposedPorts: Mapping = {}
    Volumes: Mapping = {}
    StopSignal: Text = ""


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    created: Text = ""
    created_by: Text = ""
    author: Text = ""
    comment: Text = ""
    empty_layer: Flag = False


def _entries(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if not isinstance(value, list):
        return []
    return handler([item for item in value if isinstance(item, dict)])


class ImageConfig(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    architecture: Text = ""
    os: Text = ""
    variant: Text = ""
    os_version: Text = Field(default="", alias="os.version")
    created: Text = ""
    author: Text = ""
    comment: Text = ""
    docker_version: Text = ""
    config: Annotated[RuntimeConfig | None, _or_absent(None)] = None
    rootfs: Mapping = {}
    history: Annotated[list[HistoryEntry], WrapValidator(_entries)] = []
    _document: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        try:
            document = json.loads(raw)
        except RecursionError:
            raise InvalidImageConfig("the image config is nested too deeply") from None
        except ValueError as error:  # not JSON, not UTF-8, an integer of thousands of digits
            raise InvalidImageConfig(f"the image config is not JSON: {error}") from None
        return cls.of(document)

    @classmethod
    def of(cls, document: Any) -> ImageConfig:
        if not isinstance(document, dict):
            raise InvalidImageConfig("the image config is not a JSON object")
        config = cls.model_validate(document)
        config._document = document
        return config

    @property
    def runtime_as_stored(self) -> dict[str, Any] | None:
        """The `config` object exactly as the image has it (nulls and all), for `inspect`."""
        stored = self._document.get("config")
        return stored if isinstance(stored, dict) else None

    @property
    def runtime(self) -> RuntimeConfig:
        return self.config or RuntimeConfig()

    @property
    def platform(self) -> str:
        """`os/architecture[/variant]`, or "unknown"."""
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part) or "unknown"

    @property
    def rootfs_type(self) -> str:
        kind = self.rootfs.get("type")
        return kind if isinstance(kind, str) and kind else "layers"

    def diff_ids(self) -> list[str]:
        """The digest of each layer's uncompressed tar, in order; InvalidImageConfig when
        missing or malformed."""
        diff_ids = self.rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            raise InvalidImageConfig("rootfs.diff_ids is missing or not a list")
        for diff_id in diff_ids:
            try:
                Digest.parse(diff_id)
            except (InvalidDigest, TypeError):
                raise InvalidImageConfig(f"rootfs.diff_ids holds {diff_id!r}, which is not a digest") from None
        return list(diff_ids)
