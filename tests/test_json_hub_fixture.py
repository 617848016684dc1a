"""A storage root whose Hub records were written by the JSON-era stores (before the metadata
database), kept in tests/fixtures/json-hub-v0: users root/alice/bob, organization team (alice
admin, bob write), alice's access token and refresh token, three pushed repositories with
settings, two stars on alice/app and one webhook. Today's registry serves it as it is; the
metadata import (issue 14) must move exactly this."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from registry.api.app import create_app
from registry.config import AuthSettings, Settings
from storage_backends.filesystem import FilesystemBackend
from tests.hub import basic

FIXTURE = Path(__file__).parent / "fixtures" / "json-hub-v0"
SECRETS = json.loads((Path(__file__).parent / "fixtures" / "json-hub-v0-secrets.json").read_text())


async def test_the_json_era_hub_records_are_served(aiohttp_client, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    storage = FilesystemBackend(root)
    client = await aiohttp_client(create_app(storage, Settings(auth=AuthSettings(enabled=True))))

    for user, password in [("alice", "alice-password"), ("alice", SECRETS["token"]), ("bob", "bob-password")]:
        response = await client.get("/token", params={"service": "dockyard", "scope": "repository:team/service:pull"},
                                    headers=basic(user, password))  # fmt: skip
        assert response.status == 200, (user, await response.text())
    assert (await client.get("/token", params={"service": "dockyard"}, headers=basic("alice", "wrong"))).status == 401

    refreshed = await client.post("/token", data={"grant_type": "refresh_token", "service": "dockyard",
                                                  "refresh_token": SECRETS["refresh"], "scope": "repository:alice/app:pull"})  # fmt: skip
    assert refreshed.status == 200, await refreshed.text()

    app = await (await client.get("/api/v1/repositories/alice/app", headers=basic("alice", "alice-password"))).json()
    assert (app["visibility"], app["description"], app["star_count"]) == ("public", "Alice's app", 2)
    team = await (await client.get("/api/v1/orgs/team", headers=basic("alice", "alice-password"))).json()
    assert team["members"] == {"alice": "admin", "bob": "write"}
    hooks = await (await client.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic("alice", "alice-password"))).json()
    assert [(hook["url"], hook["signed"]) for hook in hooks["webhooks"]] == [("https://hooks.example.com/a?token=x", True)]
    assert (await client.get("/v2/bob/tool/tags/list", headers={})).status == 401  # private, content there
    found = await (await client.get("/v1/search", params={"q": "app"})).json()
    assert [result["name"] for result in found["results"]] == ["alice/app"]
