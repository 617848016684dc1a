"""Real clients against the Hub: skopeo and podman log in, push and pull private and public
repositories through Dockyard's token authentication."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import HUB_ADMIN, RegistryProcess
from tests.images import OCI_TAG, BuiltImages, build_test_images, oci_archive, write_layout
from tests.test_third_party_clients import Tools, make_tools

ADMIN = HUB_ADMIN


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    return build_test_images(tmp_path_factory.mktemp("hub-images"))


def admin_call(registry: RegistryProcess, method: str, path: str, body: dict, credentials=ADMIN) -> int:
    request = urllib.request.Request(
        f"{registry.url}{path}",
        method=method,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(":".join(credentials).encode()).decode(),
        },
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as response:
        return response.status


def test_skopeo_login_push_pull_private_and_public(hub_process: RegistryProcess, images: BuiltImages, tmp_path: Path):
    hub = hub_process
    tools: Tools = make_tools(tmp_path / "clients", hub)
    assert admin_call(hub, "POST", "/api/v1/users", {"name": "alice", "password": "alice-pw"}) == 201
    layout = images.ref(OCI_TAG)

    wrong = tools.skopeo("login", "--tls-verify=false", "-u", "alice", "-p", "nope", tools.host, check=False)
    assert wrong.returncode != 0
    assert "invalid username/password" in wrong.stderr

    tools.skopeo("login", "--tls-verify=false", "-u", "alice", "-p", "alice-pw", tools.host)
    tools.skopeo("copy", "--dest-tls-verify=false", layout, tools.docker_ref("alice/private", "v1"))
    tools.skopeo("copy", "--dest-tls-verify=false", layout, tools.docker_ref("alice/public", "v1"))
    assert admin_call(hub, "PATCH", "/api/v1/repositories/alice/public", {"visibility": "public"}, ("alice", "alice-pw")) == 200
    inspected = json.loads(tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref("alice/private", "v1")).stdout)
    assert inspected["Digest"] == images.oci.digest
    tools.skopeo("copy", "--src-tls-verify=false", tools.docker_ref("alice/private", "v1"), f"oci:{tmp_path / 'back'}:v1")

    tools.skopeo("logout", tools.host)
    refused = tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref("alice/private", "v1"), check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower(), refused.stderr
    anonymous = json.loads(tools.skopeo("inspect", "--tls-verify=false", tools.docker_ref("alice/public", "v1")).stdout)
    assert anonymous["Digest"] == images.oci.digest
    push_refused = tools.skopeo("copy", "--dest-tls-verify=false", layout, tools.docker_ref("alice/public", "v2"), check=False)
    assert push_refused.returncode != 0


def test_podman_login_push_pull_private(hub_process: RegistryProcess, images: BuiltImages, tmp_path: Path):
    hub = hub_process
    tools: Tools = make_tools(tmp_path / "clients", hub)
    assert admin_call(hub, "POST", "/api/v1/users", {"name": "bob", "password": "bob-pw"}) == 201
    image_id = images.oci.config_digest.split(":", 1)[1]
    tools.podman("load", "-i", str(oci_archive(write_layout(tmp_path / "layout", {"latest": images.oci}), tmp_path / "app.tar")))
    tools.podman("login", "--tls-verify=false", "-u", "bob", "-p", "bob-pw", tools.host)
    target = f"{tools.host}/bob/app:v1"
    tools.podman("push", "--tls-verify=false", image_id, f"docker://{target}")
    tools.podman("rmi", "--all", "--force")
    tools.podman("pull", "--tls-verify=false", target)
    pulled = json.loads(tools.podman("image", "inspect", target).stdout)[0]
    assert pulled["Id"] == image_id
    tools.podman("logout", tools.host)
    tools.podman("rmi", "--all", "--force")
    refused = tools.podman("pull", "--tls-verify=false", target, check=False)
    assert refused.returncode != 0
