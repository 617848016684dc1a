"""Two registry processes on one S3 bucket (moto) and one PostgreSQL database, as a deployment
runs them behind a balancer: what one replica changes the other sees at once, concurrent
changes through both lose nothing, and a rate limit holds for the two together."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import HUB_ADMIN, hub_env, s3_settings_env, start_registry, stop_process
from tests.oci import push_image, random_image


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Replica:
    """push_image's client interface over one session and one replica's URL."""

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> None:
        self.http, self.url, self.headers = http, url, headers or {}

    def _call(self, method: str, path: str, **options):
        return self.http.request(method, self.url + path, headers={**self.headers, **options.pop("headers", {})}, **options)

    def post(self, path, **options):
        return self._call("POST", path, **options)

    def put(self, path, **options):
        return self._call("PUT", path, **options)

    def get(self, path, **options):
        return self._call("GET", path, **options)

    def patch(self, path, **options):
        return self._call("PATCH", path, **options)

    def delete(self, path, **options):
        return self._call("DELETE", path, **options)

    async def bearer(self, credentials: tuple[str, str], scope: str) -> dict[str, str]:
        async with self.get("/token", params={"service": "dockyard", "scope": scope}, headers=_basic(*credentials)) as response:
            assert response.status == 200, await response.text()
            return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def test_two_replicas_share_accounts_stars_settings_revocations_and_limits(s3_bucket, postgres_url, tmp_path: Path):
    key = tmp_path / "token-key.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    env = {
        **s3_settings_env(s3_bucket, metadata_url=postgres_url, prefix="replicas", redirect=False),
        **hub_env(),
        "DOCKYARD_AUTH__TOKEN_KEY_FILE": str(key),
        "DOCKYARD_AUTH__DEFAULT_VISIBILITY": "public",
        "DOCKYARD_AUTH__RATE_LIMIT__ENABLED": "true",
        "DOCKYARD_AUTH__RATE_LIMIT__PULLS": "10",
        "DOCKYARD_METADATA__ACTIVITY_INTERVAL": "0.2",
    }
    a = start_registry(tmp_path / "a", env=env)
    b = start_registry(tmp_path / "b", env=env)
    try:
        async with aiohttp.ClientSession() as http:
            on_a, on_b = Replica(http, a.url), Replica(http, b.url)
            admin = _basic(*HUB_ADMIN)
            users = [(f"fan{index:02d}", f"fan{index:02d}-password") for index in range(20)]
            for index, (name, password) in enumerate(users):  # accounts made on either replica
                async with (on_a if index % 2 else on_b).post("/api/v1/users", json={"name": name, "password": password}, headers=admin) as made:
                    assert made.status == 201, await made.text()

            owner = users[0]
            pusher = Replica(http, a.url, await on_a.bearer(owner, f"repository:{owner[0]}/app:pull,push"))
            await push_image(pusher, f"{owner[0]}/app", random_image(), "v1")
            repository = f"/api/v1/repositories/{owner[0]}/app"

            async def star(index: int, credentials: tuple[str, str]) -> int:
                async with (on_a if index % 2 else on_b).put(f"{repository}/-/star", headers=_basic(*credentials)) as starred:
                    return starred.status

            assert await asyncio.gather(*(star(index, user) for index, user in enumerate(users))) == [200] * 20
            async with on_b.get(repository) as seen:
                assert (await seen.json())["star_count"] == 20, "20 stars at once through two replicas: none lost"

            async def change(replica: Replica, body: dict) -> int:
                async with replica.patch(repository, json=body, headers=_basic(*owner)) as changed:
                    return changed.status

            assert await asyncio.gather(change(on_a, {"description": "short"}), change(on_b, {"full_description": "# Long"})) == [200, 200]
            async with on_a.get(repository) as seen:
                body = await seen.json()
                assert (body["description"], body["full_description"]) == ("short", "# Long"), "neither update overwrote the other"

            async with on_a.post(f"/api/v1/users/{owner[0]}/tokens", json={"name": "ci"}, headers=_basic(*owner)) as made:
                token = await made.json()
            token_credentials = (owner[0], token["token"])
            assert (await on_b.bearer(token_credentials, f"repository:{owner[0]}/app:pull"))["Authorization"]
            async with on_a.delete(f"/api/v1/users/{owner[0]}/tokens/{token['id']}", headers=_basic(*owner)) as revoked:
                assert revoked.status == 204
            async with on_b.get("/token", params={"service": "dockyard"}, headers=_basic(*token_credentials)) as refused:
                assert refused.status == 401, "a token revoked on one replica is refused by the other at once"

            puller = users[5]
            statuses = []
            for attempt in range(14):  # alternating replicas, one client
                replica = on_a if attempt % 2 else on_b
                headers = await replica.bearer(puller, f"repository:{owner[0]}/app:pull")
                async with replica.get(f"/v2/{owner[0]}/app/manifests/v1", headers=headers) as pulled:
                    statuses.append(pulled.status)
            assert statuses.count(200) == 10 and statuses[10:] == [429] * 4, statuses

            await asyncio.sleep(1.0)  # both replicas write their pull counts every 0.2 s
            async with on_a.get(repository) as seen:
                assert (await seen.json())["pull_count"] == 10, "the pulls served by both replicas, counted once each"
    finally:
        stop_process(a.process)
        stop_process(b.process)
