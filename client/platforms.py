"""Platforms (`os/arch[/variant]`): this host's, parsing, and choosing one from an image index.

Names follow Go's GOOS/GOARCH as the image-spec does; arm64's variant defaults to v8 and
32-bit arm's to v7, as containerd's matcher treats them. Pure code apart from reading the
host's machine type.
"""

from __future__ import annotations

import platform as host
from dataclasses import dataclass
from typing import Any

from .errors import InvalidReference, PlatformNotFound

_MACHINE_TO_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "i386": "386"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`; case-insensitive."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReference(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
        architecture = _ARCH_ALIASES.get(parts[1], parts[1])
        return cls(parts[0], architecture, parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_descriptor(cls, platform: dict[str, Any] | None) -> Platform | None:
        if not platform or not platform.get("os") or not platform.get("architecture"):
            return None
        return cls(str(platform["os"]), str(platform["architecture"]), platform.get("variant") or None)

    @property
    def normalized_variant(self) -> str | None:
        return self.variant or _DEFAULT_VARIANT.get(self.architecture)

    def matches(self, offered: Platform) -> bool:
        """Does an index entry for `offered` run here? A wanted variant must match, defaults filled."""
        if (self.os, self.architecture) != (offered.os, offered.architecture):
            return False
        if self.variant is None:
            return True
        return self.normalized_variant == offered.normalized_variant

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def host_platform() -> Platform:
    architecture, variant = _MACHINE_TO_ARCH.get(host.machine().lower(), (host.machine().lower(), None))
    system = host.system().lower() or "linux"
    return Platform(system, architecture, variant)


def select_manifest(index: dict[str, Any], wanted: Platform) -> dict[str, Any]:
    """The descriptor in `index["manifests"]` for `wanted`: an exact variant first, else any match.

    Entries without a platform, and attestation manifests (`unknown/unknown`), never match.
    """
    matching: list[dict[str, Any]] = []
    for entry in index.get("manifests") or []:
        offered = Platform.from_descriptor(entry.get("platform"))
        if offered is None or not wanted.matches(offered):
            continue
        if offered.normalized_variant == wanted.normalized_variant:
            return entry
        matching.append(entry)
    if matching:
        return matching[0]
    available = sorted(
        {str(offered) for entry in index.get("manifests") or [] if (offered := Platform.from_descriptor(entry.get("platform")))}
        - {"unknown/unknown"}
    )
    raise PlatformNotFound(
        f"no matching manifest for {wanted} in the manifest list entries (available: {', '.join(available) or 'none'})"
    )
