"""The fuzz pass: hypothesis-generated requests over every route of a running registry (one
with accounts and token auth on, one without), with hostile names, digests, references,
queries, headers and bodies. Whatever the request, the answer is never a 5xx, and the
registry keeps answering. Bounded: a fixed number of examples, no shrinking hunts."""

from __future__ import annotations

import base64
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RegistryProcess, hub_env, start_registry, stop_process

EXAMPLES = 800
EXISTING = "fuzz/app"

names = st.one_of(
    st.sampled_from([EXISTING, "fuzz/other", "library/x", "a", "A/B", "..", "a/../b", "a//b", "-a", "a" * 300, "fuzz/app/-/tags",
                     "%2e%2e", "x%00y", "ü/ñ", "a_b.c-d/e"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40),
)  # fmt: skip
digests = st.one_of(
    st.sampled_from(["sha256:" + "0" * 64, "sha512:" + "a" * 128, "sha256:xyz", "md5:abc", "sha256:", ":", "sha256:" + "A" * 64,
                     "sha256:" + "0" * 65, "SHA256:" + "0" * 64]),
    st.builds(lambda raw: "sha256:" + raw.hex(), st.binary(min_size=32, max_size=32)),
    st.text(max_size=80),
)  # fmt: skip
references = st.one_of(digests, st.sampled_from(["latest", "v1", "", "-", "a" * 200, "..", "tag:with:colons"]), st.text(max_size=30))
tokens = st.one_of(st.uuids().map(str), st.text(max_size=60), st.sampled_from(["..", "%2e%2e", "a/b", "0" * 64]))
media_types = st.sampled_from([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json", "application/octet-stream", "text/plain", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "", "garbage/\u00e9",
])  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _manifest_like(document: dict) -> bytes:
    return json.dumps(document).encode()


bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=2048),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"schemaVersion": st.sampled_from([2, 1, "2", None]), "mediaType": media_types,
         "config": st.fixed_dictionaries({"mediaType": media_types, "digest": digests, "size": st.integers(-5, 10**12)}),
         "layers": st.lists(st.fixed_dictionaries({"mediaType": media_types, "digest": digests, "size": st.integers(-5, 10**20)}), max_size=3),
         "subject": st.none() | st.fixed_dictionaries({"mediaType": media_types, "digest": digests, "size": st.integers(0, 100)}),
         "manifests": st.lists(json_values, max_size=3)},
    ).map(_manifest_like),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"n": ' + b"9" * 5000 + b"}"),
)  # fmt: skip
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)  # what HTTP can carry
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": media_types,
        "Accept": media_types,
        "Content-Range": st.one_of(st.sampled_from(["0-0", "0-10", "10-5", "-1-2", "a-b", "0-99999999999999999999"]), header_text),
        "Range": st.one_of(st.sampled_from(["bytes=0-0", "bytes=5-1", "bytes=-1", "bytes=0-", "bytes=a-b", "items=1-2"]), header_text),
        "Authorization": st.one_of(
            st.sampled_from(["Bearer x.y.z", "Bearer ", "Basic !!!", "Basic " + base64.b64encode(b"root-admin:admin-secret").decode(),
                             "Basic " + base64.b64encode(b"nobody:pw").decode(), "Basic " + base64.b64encode(b"no-colon").decode()]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        ),
        "Cookie": st.sampled_from(["dockyard_session=abc.def", "dockyard_session=", "dockyard_session=" + "A" * 5000]),
    },
)  # fmt: skip
queries = st.dictionaries(
    st.sampled_from(["n", "last", "digest", "mount", "from", "tag", "artifactType", "q", "page", "service", "scope", "offline_token",
                     "account", "next", "digest-algorithm"]),
    st.one_of(st.text(max_size=30), st.integers(-10, 10**30).map(str), digests, names),
    max_size=4,
)  # fmt: skip


def _n(name: str) -> str:
    return quote(name, safe="/")


def _t(text: str) -> str:
    return quote(text, safe="")


routes = st.one_of(
    st.tuples(st.sampled_from(["GET", "HEAD"]), st.sampled_from(["/v2/", "/v2", "/v2/_catalog", "/", "/healthz", "/metrics", "/login", "/v1/search"])),
    st.tuples(st.sampled_from(["GET", "DELETE"]), names.map(lambda n: f"/v2/{_n(n)}/tags/list")),
    st.tuples(st.sampled_from(["POST", "GET", "PUT"]), names.map(lambda n: f"/v2/{_n(n)}/blobs/uploads/")),
    st.tuples(st.sampled_from(["GET", "PATCH", "PUT", "DELETE", "POST"]),
              st.tuples(names, tokens).map(lambda p: f"/v2/{_n(p[0])}/blobs/uploads/{_t(p[1])}")),
    st.tuples(st.sampled_from(["GET", "HEAD", "DELETE", "PUT"]), st.tuples(names, digests).map(lambda p: f"/v2/{_n(p[0])}/blobs/{_t(p[1])}")),
    st.tuples(st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]),
              st.tuples(names, references).map(lambda p: f"/v2/{_n(p[0])}/manifests/{_t(p[1])}")),
    st.tuples(st.just("GET"), st.tuples(names, digests).map(lambda p: f"/v2/{_n(p[0])}/referrers/{_t(p[1])}")),
    st.tuples(st.sampled_from(["GET", "POST"]), st.just("/token")),
    st.tuples(st.sampled_from(["GET", "POST"]), st.just("/api/v1/users")),
    st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
              st.tuples(tokens, st.sampled_from(["tokens", "password", "tokens/abc", "tokens/%2e%2e"])).map(lambda p: f"/api/v1/users/{_t(p[0])}/{p[1]}")),
    st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
              st.tuples(tokens, tokens).map(lambda p: f"/api/v1/orgs/{_t(p[0])}/members/{_t(p[1])}")),
    st.tuples(st.sampled_from(["GET", "PATCH", "PUT", "DELETE", "POST"]),
              st.tuples(names, st.sampled_from(["", "/-/star", "/-/webhooks", "/-/webhooks/abc"])).map(lambda p: f"/api/v1/repositories/{_n(p[0])}{p[1]}")),
    st.tuples(st.sampled_from(["GET", "POST"]),
              st.tuples(names, st.sampled_from(["", "/-/tags/v1", "/-/settings", "/-/manifests/sha256:" + "0" * 64])).map(lambda p: f"/r/{_n(p[0])}{p[1]}")),
    st.tuples(st.sampled_from(["POST", "GET"]), st.sampled_from(["/login", "/logout"])),
)  # fmt: skip


def _send(registry: RegistryProcess, method: str, path: str, query: dict, head: dict, body: bytes) -> int:
    target = path + ("?" + urlencode(query) if query else "")
    connection = http.client.HTTPConnection(registry.host, registry.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for key, value in head.items():
            connection.putheader(key, value.encode("utf-8", "replace").decode("latin-1", "replace"))
        if body or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RegistryProcess]]:
    root = tmp_path_factory.mktemp("fuzz")
    running = [start_registry(root / "open"), start_registry(root / "hub", env=hub_env())]
    try:
        for registry in running:  # something real to hit: a blob and a manifest in EXISTING
            _seed(registry)
        yield running
    finally:
        for registry in running:
            stop_process(registry.process)


def _seed(registry: RegistryProcess) -> None:
    from tests.oci import random_image

    image = random_image(layers=1)
    auth = {"Authorization": "Basic " + base64.b64encode(b"root-admin:admin-secret").decode()}
    for blob in [image.config, *image.layers]:
        _send(registry, "POST", f"/v2/{EXISTING}/blobs/uploads/", {"digest": blob.digest}, auth, blob.data)
    _send(registry, "PUT", f"/v2/{EXISTING}/manifests/v1", {}, {**auth, "Content-Type": image.media_type}, image.manifest)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
@given(route=routes, query=queries, head=headers, body=bodies, which=st.integers(0, 1))
def test_no_request_gets_a_5xx(registries: list[RegistryProcess], route: tuple[str, str], query: dict, head: dict, body: bytes,
                               which: int) -> None:  # fmt: skip
    registry = registries[which]
    method, path = route
    status = _send(registry, method, path, query, head, body if method not in ("GET", "HEAD", "DELETE") else b"")
    assert status < 500, (method, path, query, head, body[:200], status)


def test_the_registries_still_answer_after_the_fuzz(registries: list[RegistryProcess]) -> None:
    for registry in registries:
        assert registry.process.poll() is None
        assert _send(registry, "GET", "/healthz", {}, {}, b"") == 200
    assert os.path.isdir(Path(registries[0].root))
