"""Image references as Docker parses them: `[host[:port]/]path/name[:tag][@digest]`.

`ImageReference.parse("alpine")` is `docker.io/library/alpine:latest`; the first path component
is a registry host only when it contains '.' or ':' or is 'localhost'. One-component names get
`library/` on Docker Hub-style hosts only. `str()` is the normalised full form the local store
records. Pure code: no I/O, no HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import Digest, InvalidDigest


class InvalidReference(ValueError):
    """An image reference, registry name or platform string that cannot be parsed."""


DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_INDEX = "index.docker.io"
LIBRARY_HOSTS = frozenset({DOCKER_HUB})
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX_ID = re.compile(r"^[a-f0-9]{64}$")


def looks_like_host(component: str) -> bool:
    """Docker's rule for whether the first component of a name is a registry host."""
    return "." in component or ":" in component or component == "localhost"


def normalize_registry(text: str) -> str:
    """`https://index.docker.io/v1/`, `index.docker.io` or `docker.io` -> `docker.io`; others lowercased."""
    host = text.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0].lower()
    if not host or not _HOST.match(host):
        raise InvalidReference(f"invalid registry {text!r}: expected host[:port]")
    if host in (DOCKER_HUB_INDEX, DOCKER_HUB_API):
        return DOCKER_HUB
    return host


def api_host(registry: str) -> str:
    """The host that serves the registry's /v2/ API (Docker Hub's differs from its name)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


@dataclass(frozen=True)
class ImageReference:
    registry: str
    """host[:port], normalised (`docker.io` for Docker Hub)."""
    repository: str
    """The path within the registry, e.g. `library/alpine` or `acme/app`."""
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        default_registry: str = DOCKER_HUB,
        library_hosts: frozenset[str] = LIBRARY_HOSTS,
        default_tag: str | None = DEFAULT_TAG,
    ) -> ImageReference:
        """Parse `text`; a reference without tag or digest gets `default_tag` (None keeps none)."""
        if not isinstance(text, str) or not text:
            raise InvalidReference("invalid reference format: empty reference")
        if _HEX_ID.match(text):
            raise InvalidReference(
                f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
            )
        remainder, at, digest_text = text.partition("@")
        digest = _parse_digest(text, digest_text) if at else None

        first, slash, rest = remainder.partition("/")
        if slash and looks_like_host(first):
            registry, path = _registry_of(text, first), rest
        else:
            registry, path = normalize_registry(default_registry), remainder

        tag = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
            if not _TAG.match(tag):
                raise InvalidReference(
                    f"invalid reference format: tag {tag!r} in {text!r} must be up to 128 of "
                    "[A-Za-z0-9_.-], not starting with '.' or '-'"
                )
        if not path:
            raise InvalidReference(f"invalid reference format: {text!r} has no repository name")
        if path != path.lower() and _PATH.match(path.lower()):
            raise InvalidReference(f"invalid reference format: repository name {path!r} must be lowercase")
        if not _PATH.match(path):
            raise InvalidReference(
                f"invalid reference format: {path!r} in {text!r} is not a repository name "
                "(lowercase letters and digits separated by '.', '_', '__' or '-', joined by '/')"
            )
        if registry in library_hosts and "/" not in path:
            path = f"library/{path}"
        if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
            raise InvalidReference(f"invalid reference format: repository name must not be longer than {MAX_NAME_LENGTH} characters")
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry, path, tag, digest)

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one (it pins), else the tag."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        raise InvalidReference(f"{self.name} has neither a tag nor a digest")

    @property
    def api_host(self) -> str:
        return api_host(self.registry)

    def with_tag(self, tag: str) -> ImageReference:
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageReference:
        return replace(self, digest=str(_parse_digest(digest, digest)))

    def familiar(self) -> str:
        """The short form Docker shows: `alpine:latest`, `acme/app:1`, `localhost:5000/x:y`."""
        name = self.repository if self.registry == DOCKER_HUB else self.name
        if self.registry == DOCKER_HUB and name.startswith("library/") and name.count("/") == 1:
            name = name[len("library/") :]
        return name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def _registry_of(text: str, host: str) -> str:
    try:
        return normalize_registry(host)
    except InvalidReference:
        raise InvalidReference(f"invalid reference format: {host!r} in {text!r} is not a registry host") from None


def _parse_digest(text: str, digest_text: str) -> str:
    try:
        return str(Digest.parse(digest_text))
    except InvalidDigest as error:
        raise InvalidReference(f"invalid reference format: {text!r}: {error}") from None
