"""Image references parse as Docker parses them; platforms and search terms too."""

from __future__ import annotations

import pytest

from client.distribution import split_search_term
from client.errors import InvalidReference, PlatformNotFound
from client.platforms import Platform, host_platform, select_manifest
from client.registry_http import uses_http
from ocispec.reference import ImageReference, normalize_registry

DIGEST = "sha256:" + "ab" * 32

# text -> (registry, repository, tag, digest, normalised str)
VALID = [
    ("alpine", ("docker.io", "library/alpine", "latest", None, "docker.io/library/alpine:latest")),
    ("alpine:3.19", ("docker.io", "library/alpine", "3.19", None, "docker.io/library/alpine:3.19")),
    ("library/alpine", ("docker.io", "library/alpine", "latest", None, "docker.io/library/alpine:latest")),
    ("acme/app", ("docker.io", "acme/app", "latest", None, "docker.io/acme/app:latest")),
    ("docker.io/alpine", ("docker.io", "library/alpine", "latest", None, "docker.io/library/alpine:latest")),
    ("index.docker.io/alpine", ("docker.io", "library/alpine", "latest", None, "docker.io/library/alpine:latest")),
    ("localhost/app", ("localhost", "app", "latest", None, "localhost/app:latest")),
    ("localhost:5000/app", ("localhost:5000", "app", "latest", None, "localhost:5000/app:latest")),
    ("localhost:5000/acme/app:1.0", ("localhost:5000", "acme/app", "1.0", None, "localhost:5000/acme/app:1.0")),
    ("127.0.0.1:5000/a/b/c:v_1-2.3", ("127.0.0.1:5000", "a/b/c", "v_1-2.3", None, "127.0.0.1:5000/a/b/c:v_1-2.3")),
    ("registry.example.com/team/app", ("registry.example.com", "team/app", "latest", None, "registry.example.com/team/app:latest")),
    ("Registry.Example.com/app", ("registry.example.com", "app", "latest", None, "registry.example.com/app:latest")),
    ("myhost:5000/app", ("myhost:5000", "app", "latest", None, "myhost:5000/app:latest")),
    ("[::1]:5000/app", ("[::1]:5000", "app", "latest", None, "[::1]:5000/app:latest")),
    ("myhost/app", ("docker.io", "myhost/app", "latest", None, "docker.io/myhost/app:latest")),
    (f"alpine@{DIGEST}", ("docker.io", "library/alpine", None, DIGEST, f"docker.io/library/alpine@{DIGEST}")),
    (f"alpine:3@{DIGEST}", ("docker.io", "library/alpine", "3", DIGEST, f"docker.io/library/alpine:3@{DIGEST}")),
    (f"localhost:5000/app@{DIGEST}", ("localhost:5000", "app", None, DIGEST, f"localhost:5000/app@{DIGEST}")),
    ("a.b-c/d__e--f.g_h:TAG", ("a.b-c", "d__e--f.g_h", "TAG", None, "a.b-c/d__e--f.g_h:TAG")),
    ("app:" + "t" * 128, ("docker.io", "library/app", "t" * 128, None, "docker.io/library/app:" + "t" * 128)),
]

# text -> a fragment of the error message
INVALID = [
    ("", "empty"),
    ("Alpine", "must be lowercase"),
    ("acme/App:1", "must be lowercase"),
    ("alpine:", "tag ''"),
    ("alpine:.bad", "tag '.bad'"),
    ("app:" + "t" * 129, "tag"),
    ("alpine@sha256:short", "malformed sha256"),
    ("alpine@md5:" + "0" * 32, "not supported"),
    ("a" * 64, "64-byte hexadecimal"),
    ("localhost:5000/", "no repository name"),
    ("acme//app", "not a repository name"),
    ("-acme/app", "not a repository name"),
    ("acme/app_", "not a repository name"),
    ("bad_host:5000/app", "not a registry host"),
    ("acme/app:1:2", "not a repository name"),
    ("x/" + "a" * 260, "longer than 255"),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[case[0][:40] or "empty" for case in VALID])
def test_valid_references_parse_like_docker(text: str, expected: tuple) -> None:
    reference = ImageReference.parse(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest, str(reference)) == expected
    assert ImageReference.parse(str(reference)) == reference  # the normalised form is a fixed point


@pytest.mark.parametrize(("text", "fragment"), INVALID, ids=[case[0][:40] or "empty" for case in INVALID])
def test_invalid_references_are_rejected_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as raised:
        ImageReference.parse(text)
    assert fragment in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_default_registry_is_configurable_and_gets_no_library_prefix() -> None:
    reference = ImageReference.parse("app:1", default_registry="localhost:5000")
    assert str(reference) == "localhost:5000/app:1"
    assert str(ImageReference.parse("acme/app", default_registry="registry.example.com")) == "registry.example.com/acme/app:latest"
    # a host in the reference wins over the default
    assert ImageReference.parse("docker.io/alpine", default_registry="localhost:5000").repository == "library/alpine"


def test_library_prefix_applies_to_the_hosts_named() -> None:
    reference = ImageReference.parse("app", default_registry="hub.local", library_hosts=frozenset({"hub.local"}))
    assert str(reference) == "hub.local/library/app:latest"


def test_default_tag_can_be_left_off() -> None:
    reference = ImageReference.parse("localhost:5000/app", default_tag=None)
    assert reference.tag is None and str(reference) == "localhost:5000/app"
    with pytest.raises(InvalidReference):
        _ = reference.reference


def test_properties_for_the_api() -> None:
    hub = ImageReference.parse("alpine")
    assert hub.api_host == "registry-1.docker.io"
    assert hub.name == "docker.io/library/alpine"
    assert hub.reference == "latest"
    assert hub.familiar() == "alpine:latest"
    pinned = ImageReference.parse(f"localhost:5000/acme/app:1@{DIGEST}")
    assert pinned.reference == DIGEST  # a digest pins, whatever the tag says
    assert pinned.api_host == "localhost:5000"
    assert pinned.familiar() == f"localhost:5000/acme/app:1@{DIGEST}"
    assert str(pinned.with_tag("2")) == "localhost:5000/acme/app:2"
    assert str(hub.with_digest(DIGEST)) == f"docker.io/library/alpine:latest@{DIGEST}"
    assert ImageReference.parse("acme/app").familiar() == "acme/app:latest"


@pytest.mark.parametrize(
    ("text", "registry"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://LOCALHOST:5000", "localhost:5000"),
        ("127.0.0.1:5000/", "127.0.0.1:5000"),
    ],
)
def test_registry_names_normalise(text: str, registry: str) -> None:
    assert normalize_registry(text) == registry


@pytest.mark.parametrize(
    ("registry", "insecure", "http"),
    [
        ("localhost:5000", (), True),
        ("localhost", (), True),
        ("127.0.0.1:41234", (), True),
        ("[::1]:5000", (), True),
        ("registry.example.com", (), False),
        ("registry.example.com:5000", ("registry.example.com:5000",), True),
        ("registry.example.com:5000", ("registry.example.com",), True),
        ("other.example.com", ("registry.example.com",), False),
    ],
)
def test_plain_http_only_for_loopback_and_insecure_registries(registry: str, insecure: tuple, http: bool) -> None:
    assert uses_http(registry, insecure) is http


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("nginx", ("docker.io", "nginx")),
        ("acme/app", ("docker.io", "acme/app")),
        ("localhost:5000/app", ("localhost:5000", "app")),
        ("registry.example.com/team", ("registry.example.com", "team")),
    ],
)
def test_search_terms_name_their_registry(term: str, expected: tuple) -> None:
    assert split_search_term(term) == expected


# -- platforms -------------------------------------------------------------------------------------

INDEX = {
    "manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:" + "3" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:" + "4" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:" + "5" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "sha256:" + "6" * 64, "platform": {"os": "windows", "architecture": "amd64"}},
    ]
}


@pytest.mark.parametrize(
    ("wanted", "digit"),
    [
        ("linux/amd64", "1"),
        ("linux/arm/v6", "2"),
        ("linux/arm/v7", "3"),
        ("linux/arm", "3"),  # arm's default variant is v7
        ("linux/arm64", "4"),
        ("linux/arm64/v8", "4"),
        ("linux/aarch64", "4"),
        ("windows/amd64", "6"),
    ],
)
def test_platform_selection_from_an_index(wanted: str, digit: str) -> None:
    assert select_manifest(INDEX, Platform.parse(wanted))["digest"] == "sha256:" + digit * 64


def test_arm64_without_a_variant_matches_v8() -> None:
    index = {"manifests": [{"digest": "sha256:" + "7" * 64, "platform": {"os": "linux", "architecture": "arm64"}}]}
    assert select_manifest(index, Platform.parse("linux/arm64/v8"))["digest"] == "sha256:" + "7" * 64


def test_missing_platform_lists_what_there_is() -> None:
    with pytest.raises(PlatformNotFound) as raised:
        select_manifest(INDEX, Platform.parse("linux/s390x"))
    message = str(raised.value)
    assert "linux/s390x" in message and "linux/amd64" in message and "linux/arm/v7" in message
    assert "unknown" not in message


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d"])
def test_bad_platform_strings_are_rejected(text: str) -> None:
    with pytest.raises(InvalidReference):
        Platform.parse(text)


def test_host_platform_is_linux_with_a_go_architecture() -> None:
    platform = host_platform()
    assert platform.os == "linux"
    assert platform.architecture in {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"}
