"""A storage root whose Hub records were written by the JSON-era stores (before the metadata
database), kept in tests/fixtures/json-hub-v0: users root/alice/bob, organization team (alice
admin, bob write), alice's access token and refresh token, three pushed repositories with
settings, two stars on alice/app and one webhook.

The registry refuses to start on it until `dockyard-registry metadata import` has moved the
records into the database; after the import (run twice: the second changes nothing) every
account signs in and everything the records said holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry.api.app import create_app
from registry.config import AuthSettings, MetadataSettings, Settings
from storage_backends.filesystem import FilesystemBackend
from tests.conftest import free_port
from tests.hub import basic

FIXTURE = Path(__file__).parent / "fixtures" / "json-hub-v0"
SECRETS = json.loads((Path(__file__).parent / "fixtures" / "json-hub-v0-secrets.json").read_text())


def _registry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DOCKYARD_AUTH__ENABLED": "true", **(env or {})})  # fmt: skip


@pytest.mark.parametrize("metadata", ["sqlite", "postgresql"])
async def test_the_json_era_records_are_imported_once_and_then_served(aiohttp_client, tmp_path, request, metadata):
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    url = request.getfixturevalue("postgres_url") if metadata == "postgresql" else None
    env = {"DOCKYARD_METADATA__URL": url} if url else {}

    refused = _registry("serve", "--storage-root", str(root), "--listen", f"127.0.0.1:{free_port()}", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "run `dockyard-registry metadata import` first" in refused.stderr

    first = _registry("metadata", "import", "--storage-root", str(root), env=env)
    assert first.returncode == 0, first.stderr
    assert "users: 3 imported, 0 already there" in first.stdout
    assert "organizations: 1 imported" in first.stdout and "stars: 2 imported" in first.stdout
    assert "access tokens: 1 imported" in first.stdout and "webhooks: 1 imported" in first.stdout
    again = _registry("metadata", "import", "--storage-root", str(root), env=env)
    assert again.returncode == 0 and "users: 0 imported, 3 already there" in again.stdout, again.stdout
    assert "stars: 0 imported, 2 already there" in again.stdout

    storage = FilesystemBackend(root)
    settings = Settings(auth=AuthSettings(enabled=True), metadata=MetadataSettings(url=url))
    client = await aiohttp_client(create_app(storage, settings))
    for user, password in [("root", "root-password"), ("alice", "alice-password"), ("alice", SECRETS["token"]), ("bob", "bob-password")]:
        response = await client.get("/token", params={"service": "dockyard", "scope": "repository:team/service:pull"},
                                    headers=basic(user, password))  # fmt: skip
        assert response.status == 200, (user, await response.text())
    assert (await client.get("/token", params={"service": "dockyard"}, headers=basic("alice", "wrong"))).status == 401
    users = await (await client.get("/api/v1/users", headers=basic("root", "root-password"))).json()
    assert users["users"] == ["alice", "bob", "root"]

    refreshed = await client.post("/token", data={"grant_type": "refresh_token", "service": "dockyard",
                                                  "refresh_token": SECRETS["refresh"], "scope": "repository:alice/app:pull"})  # fmt: skip
    assert refreshed.status == 200, await refreshed.text()

    app = await (await client.get("/api/v1/repositories/alice/app", headers=basic("bob", "bob-password"))).json()
    assert (app["visibility"], app["description"], app["star_count"], app["starred"]) == ("public", "Alice's app", 2, True)
    team = await (await client.get("/api/v1/orgs/team", headers=basic("alice", "alice-password"))).json()
    assert team["members"] == {"alice": "admin", "bob": "write"}
    hooks = await (await client.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic("alice", "alice-password"))).json()
    assert [(hook["url"], hook["signed"]) for hook in hooks["webhooks"]] == [("https://hooks.example.com/a?token=x", True)]
    assert (await client.get("/v2/bob/tool/tags/list", headers={})).status == 401  # private, content there
    found = await (await client.get("/v1/search", params={"q": "app"})).json()
    assert [result["name"] for result in found["results"]] == ["alice/app"]
    revoked = await client.delete(f"/api/v1/users/alice/tokens/{SECRETS['token_id']}", headers=basic("alice", "alice-password"))
    assert revoked.status == 204
    assert (await client.get("/token", params={"service": "dockyard"}, headers=basic("alice", SECRETS["token"]))).status == 401
