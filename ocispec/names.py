"""Repository-name and tag grammar of the OCI distribution-spec v1.1.

A name that passes `validate_repository` contains only `[a-z0-9._/-]`, never `..`, an empty
component or a leading `/`, so it can be used as a storage path without traversal risk.
"""

from __future__ import annotations

import re

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


class InvalidName(ValueError):
    """A repository name outside the spec's grammar."""


class InvalidTag(ValueError):
    """A tag outside the spec's grammar."""


def validate_repository(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"repository name is longer than {MAX_NAME_LENGTH} characters")
    if not REPOSITORY_NAME.match(name):
        raise InvalidName(
            f"invalid repository name {name!r}: components of lowercase letters and digits, "
            "separated by '.', '_', '__' or '-', joined by '/'"
        )
    return name


def validate_tag(tag: str) -> str:
    if not TAG.match(tag):
        raise InvalidTag(
            f"invalid tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag


def familiar(name: str) -> str:
    """A full image name (`host/repo:tag`, `host/repo@digest`, or `host/repo`) as Docker shows it:
    `docker.io/library/alpine:3` -> `alpine:3`; other registries' names are unchanged."""
    host, slash, rest = name.partition("/")
    if not slash or host != "docker.io":
        return name
    if rest.startswith("library/") and "/" not in rest[len("library/") :]:
        return rest[len("library/") :]
    return rest
