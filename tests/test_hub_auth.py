"""Token authentication and access control on the distribution API."""

from __future__ import annotations

import base64
import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hub import ADMIN, basic, bearer, create_user, hub_client, token
from tests.oci import error_codes, push_image, random_blob, random_image


def claims_of(token_text: str) -> dict:
    return jwt.decode(token_text, options={"verify_signature": False})


async def test_unauthenticated_request_gets_bearer_challenge(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    response = await client.get("/v2/alice/app/manifests/latest")
    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="http://{client.host}:{client.port}/token"' in challenge
    assert 'service="dockyard"' in challenge
    assert 'scope="repository:alice/app:pull"' in challenge
    assert await error_codes(response) == ["UNAUTHORIZED"]
    ping = await client.get("/v2/")
    assert ping.status == 401
    push = await client.post("/v2/alice/app/blobs/uploads/")
    assert 'scope="repository:alice/app:pull,push"' in push.headers["WWW-Authenticate"]


async def test_token_grants_intersection_of_requested_and_permitted(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    granted = await token(client, alice, "repository:alice/app:pull,push,delete", "repository:bob/app:pull,push", "registry:catalog:*")
    access = {entry["name"]: entry["actions"] for entry in claims_of(granted["token"])["access"]}
    assert access == {"alice/app": ["delete", "pull", "push"], "bob/app": [], "catalog": ["*"]}
    assert granted["access_token"] == granted["token"]
    assert granted["expires_in"] == 300
    claims = claims_of(granted["token"])
    assert claims["sub"] == "alice" and claims["aud"] == "dockyard" and claims["iss"] == "dockyard"


async def test_owner_pushes_and_pulls_private_repository(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await create_user(client, "bob")
    image = random_image()
    client.session.headers.update(await bearer(client, alice, "repository:alice/app:pull,push"))
    await push_image(client, "alice/app", image, "v1")
    pulled = await client.get("/v2/alice/app/manifests/v1")
    assert pulled.status == 200

    client.session.headers.pop("Authorization")
    anonymous = await client.get("/v2/alice/app/manifests/v1", headers=await bearer(client, None, "repository:alice/app:pull"))
    assert anonymous.status == 401, "anonymous callers are asked to sign in, as Docker Hub does"
    assert 'error="insufficient_scope"' in anonymous.headers["WWW-Authenticate"]
    bob = await client.get("/v2/alice/app/manifests/v1", headers=await bearer(client, ("bob", "pw-123456"), "repository:alice/app:pull"))
    assert bob.status == 403
    bob_push = await client.post("/v2/alice/app/blobs/uploads/", headers=await bearer(client, ("bob", "pw-123456"), "repository:alice/app:pull,push"))
    assert bob_push.status == 403


async def test_public_repository_is_pulled_anonymously_but_not_pushed(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    image = random_image()
    await push_image_as(client, alice, "alice/pub", image)
    made_public = await client.patch("/api/v1/repositories/alice/pub", json={"visibility": "public"}, headers=basic(*alice))
    assert made_public.status == 200
    anonymous = await bearer(client, None, "repository:alice/pub:pull,push")
    assert (await client.get("/v2/alice/pub/manifests/v1", headers=anonymous)).status == 200
    assert (await client.post("/v2/alice/pub/blobs/uploads/", headers=anonymous)).status == 401
    bob = await create_user(client, "bob")
    refused = await client.post("/v2/alice/pub/blobs/uploads/", headers=await bearer(client, bob, "repository:alice/pub:pull,push"))
    assert refused.status == 403
    assert await error_codes(refused) == ["DENIED"]


async def push_image_as(client, credentials, name, image, tag="v1"):
    headers = await bearer(client, credentials, f"repository:{name}:pull,push")
    client.session.headers.update(headers)
    try:
        await push_image(client, name, image, tag)
    finally:
        client.session.headers.pop("Authorization")


async def test_default_visibility_public_makes_pushed_repositories_public(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage, default_visibility="public")
    alice = await create_user(client, "alice")
    await push_image_as(client, alice, "alice/app", random_image())
    anonymous = await bearer(client, None, "repository:alice/app:pull")
    assert (await client.get("/v2/alice/app/manifests/v1", headers=anonymous)).status == 200


async def test_expired_forged_and_wrong_audience_tokens_are_401(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await push_image_as(client, alice, "alice/app", random_image())
    good = (await token(client, alice, "repository:alice/app:pull"))["token"]
    claims = claims_of(good)
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, other_key, algorithm="ES256")
    header, payload, signature = good.split(".")
    tampered_claims = {**claims, "access": [{"type": "repository", "name": "alice/app", "actions": ["pull", "push", "delete"]}]}
    tampered = ".".join([header, base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).decode().rstrip("="), signature])
    for bad in [forged, tampered, "not-a-jwt", good + "x"]:
        response = await client.get("/v2/alice/app/manifests/v1", headers={"Authorization": f"Bearer {bad}"})
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_expired_and_wrong_audience(aiohttp_client, storage):
    from registry.api.context import SERVICES

    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await push_image_as(client, alice, "alice/app", random_image())
    signer = client.app[SERVICES].signer
    now = int(time.time())
    base = {"iss": "dockyard", "sub": "alice", "aud": "dockyard", "iat": now, "nbf": now, "exp": now + 60,
            "access": [{"type": "repository", "name": "alice/app", "actions": ["pull"]}]}
    key = signer._private_key
    valid = jwt.encode(base, key, algorithm="ES256")
    assert (await client.get("/v2/alice/app/manifests/v1", headers={"Authorization": f"Bearer {valid}"})).status == 200
    for changes in ({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}, {"aud": "another-registry"}, {"iss": "someone-else"}):
        bad = jwt.encode({**base, **changes}, key, algorithm="ES256")
        response = await client.get("/v2/alice/app/manifests/v1", headers={"Authorization": f"Bearer {bad}"})
        assert response.status == 401, changes


async def test_insufficient_scope_asks_again_when_the_caller_could_get_it(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    pull_only = await bearer(client, alice, "repository:alice/app:pull")
    response = await client.post("/v2/alice/app/blobs/uploads/", headers=pull_only)
    assert response.status == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert 'scope="repository:alice/app:pull,push"' in response.headers["WWW-Authenticate"]


async def test_wrong_password_and_personal_access_tokens(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    await create_user(client, "alice", "right-password")
    wrong = await client.get("/token", params={"service": "dockyard", "scope": "repository:alice/app:pull"}, headers=basic("alice", "wrong"))
    assert wrong.status == 401
    missing = await client.get("/token", params={"service": "dockyard"}, headers=basic("nobody", "x"))
    assert missing.status == 401

    created = await client.post("/api/v1/users/alice/tokens", json={"name": "ci"}, headers=basic("alice", "right-password"))
    assert created.status == 201
    pat = (await created.json())["token"]
    granted = await token(client, ("alice", pat), "repository:alice/app:push")
    assert claims_of(granted["token"])["access"][0]["actions"] == ["push"]
    listed = await (await client.get("/api/v1/users/alice/tokens", headers=basic("alice", pat))).json()
    token_id = listed["tokens"][0]["id"]
    assert "token" not in listed["tokens"][0]
    assert (await client.delete(f"/api/v1/users/alice/tokens/{token_id}", headers=basic("alice", "right-password"))).status == 204
    revoked = await client.get("/token", params={"service": "dockyard"}, headers=basic("alice", pat))
    assert revoked.status == 401


async def test_oauth2_password_and_refresh_token_grants(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    form = {"grant_type": "password", "username": alice[0], "password": alice[1], "service": "dockyard",
            "scope": "repository:alice/app:pull,push", "client_id": "test", "access_type": "offline"}
    response = await client.post("/token", data=form)
    assert response.status == 200
    body = await response.json()
    assert claims_of(body["access_token"])["access"][0]["actions"] == ["pull", "push"]
    refresh = body["refresh_token"]
    again = await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh, "service": "dockyard",
                                              "scope": "repository:alice/app:pull", "client_id": "test"})
    assert again.status == 200
    assert claims_of((await again.json())["access_token"])["sub"] == "alice"
    bad = await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "forged", "service": "dockyard"})
    assert bad.status == 401
    wrong = await client.post("/token", data={**form, "password": "nope"})
    assert wrong.status == 401
    unsupported = await client.post("/token", data={"grant_type": "client_credentials"})
    assert unsupported.status == 400
    other_service = await client.get("/token", params={"service": "elsewhere"})
    assert other_service.status == 400


async def test_organization_roles(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    owner = await create_user(client, "owner")
    reader = await create_user(client, "reader")
    writer = await create_user(client, "writer")
    assert (await client.post("/api/v1/orgs", json={"name": "acme"}, headers=basic(*owner))).status == 201
    for user, role in ((reader, "read"), (writer, "write")):
        response = await client.put(f"/api/v1/orgs/acme/members/{user[0]}", json={"role": role}, headers=basic(*owner))
        assert response.status == 200
    denied = await client.put("/api/v1/orgs/acme/members/reader", json={"role": "admin"}, headers=basic(*writer))
    assert denied.status == 403

    await push_image_as(client, writer, "acme/api", random_image())
    reader_token = await token(client, reader, "repository:acme/api:pull,push,delete")
    assert claims_of(reader_token["token"])["access"][0]["actions"] == ["pull"]
    assert (await client.get("/v2/acme/api/manifests/v1", headers={"Authorization": f"Bearer {reader_token['token']}"})).status == 200
    blob = random_blob(10)
    refused = await client.post("/v2/acme/api/blobs/uploads/", params={"digest": blob.digest}, data=blob.data,
                                headers={"Authorization": f"Bearer {reader_token['token']}"})
    assert refused.status == 403
    stranger = await create_user(client, "stranger")
    assert claims_of((await token(client, stranger, "repository:acme/api:pull"))["token"])["access"][0]["actions"] == []


async def test_catalog_shows_only_pullable_repositories(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    await push_image_as(client, alice, "alice/private", random_image())
    await push_image_as(client, alice, "alice/public", random_image())
    await push_image_as(client, bob, "bob/secret", random_image())
    await client.patch("/api/v1/repositories/alice/public", json={"visibility": "public"}, headers=basic(*alice))

    async def catalog(credentials):
        headers = await bearer(client, credentials, "registry:catalog:*")
        response = await client.get("/v2/_catalog", headers=headers)
        assert response.status == 200
        return (await response.json())["repositories"]

    assert await catalog(alice) == ["alice/private", "alice/public"]
    assert await catalog(bob) == ["alice/public", "bob/secret"]
    assert await catalog(None) == ["alice/public"]
    assert sorted(await catalog(ADMIN)) == ["alice/private", "alice/public", "bob/secret"]
    page = await client.get("/v2/_catalog?n=1", headers=await bearer(client, bob, "registry:catalog:*"))
    assert (await page.json())["repositories"] == ["alice/public"]
    assert "Link" in page.headers
    without_scope = await client.get("/v2/_catalog", headers=await bearer(client, bob, "repository:bob/secret:pull"))
    assert without_scope.status == 403


async def test_mount_needs_pull_on_the_source(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    image = random_image(layers=1)
    await push_image_as(client, alice, "alice/app", image)
    layer = image.layers[0].digest
    headers = await bearer(client, bob, "repository:bob/app:pull,push", "repository:alice/app:pull")
    attempt = await client.post("/v2/bob/app/blobs/uploads/", params={"mount": layer, "from": "alice/app"}, headers=headers)
    assert attempt.status == 202, "no pull on alice/app: an upload starts instead of a mount"
    without_from = await client.post("/v2/bob/app/blobs/uploads/", params={"mount": layer}, headers=headers)
    assert without_from.status == 202
    assert (await client.head(f"/v2/bob/app/blobs/{layer}", headers=headers)).status == 404
    own = await bearer(client, alice, "repository:alice/copy:pull,push", "repository:alice/app:pull")
    mounted = await client.post("/v2/alice/copy/blobs/uploads/", params={"mount": layer, "from": "alice/app"}, headers=own)
    assert mounted.status == 201


async def test_admin_api_permissions(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    assert (await client.post("/api/v1/users", json={"name": "eve", "password": "x"}, headers=basic(*alice))).status == 403
    assert (await client.post("/api/v1/users", json={"name": "eve", "password": "x"})).status == 401
    assert (await client.post("/api/v1/users", json={"name": "alice", "password": "x"}, headers=basic(*ADMIN))).status == 409
    assert (await client.post("/api/v1/users", json={"name": "Bad Name", "password": "x"}, headers=basic(*ADMIN))).status == 400
    assert (await client.put("/api/v1/users/admin/password", json={"password": "y"}, headers=basic(*alice))).status == 403
    assert (await client.put("/api/v1/users/alice/password", json={"password": "new-pw"}, headers=basic(*alice))).status == 204
    assert (await client.get("/token", headers=basic("alice", "new-pw"))).status == 200
    listed = await (await client.get("/api/v1/users", headers=basic(*ADMIN))).json()
    assert listed["users"] == ["admin", "alice"]


async def test_pull_rate_limit_answers_429_with_docker_hub_headers(aiohttp_client, storage):
    from registry.config import RateLimitSettings

    client = await hub_client(aiohttp_client, storage, rate_limit=RateLimitSettings(enabled=True, pulls=3, window=3600), default_visibility="public")
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    await push_image_as(client, alice, "alice/app", random_image())
    alice_headers = await bearer(client, alice, "repository:alice/app:pull")
    remaining = []
    for _ in range(3):
        response = await client.get("/v2/alice/app/manifests/v1", headers=alice_headers)
        assert response.status == 200
        assert response.headers["ratelimit-limit"] == "3;w=3600"
        remaining.append(response.headers["ratelimit-remaining"])
    assert remaining == ["2;w=3600", "1;w=3600", "0;w=3600"]
    assert (await client.head("/v2/alice/app/manifests/v1", headers=alice_headers)).status == 200, "HEAD is not a pull"
    limited = await client.get("/v2/alice/app/manifests/v1", headers=alice_headers)
    assert limited.status == 429
    assert await error_codes(limited) == ["TOOMANYREQUESTS"]
    assert 3500 < int(limited.headers["Retry-After"]) <= 3600
    other = await client.get("/v2/alice/app/manifests/v1", headers=await bearer(client, bob, "repository:alice/app:pull"))
    assert other.status == 200, "limits are per client"


async def test_rate_limiter_window_slides(database):
    from registry.core.ratelimit import SlidingWindowLimiter

    now = [1000.0]
    limiter = SlidingWindowLimiter(database, "pulls", 2, 60, clock=lambda: now[0])
    assert (await limiter.check("a")).allowed and (await limiter.check("a")).allowed
    refused = await limiter.check("a")
    assert not refused.allowed and refused.retry_after == 60
    assert (await limiter.check("b")).allowed, "each key has its own window"
    now[0] += 30
    assert not (await limiter.check("a")).allowed
    now[0] += 31
    assert (await limiter.check("a")).allowed
    now[0] += 120
    assert await limiter.prune() == 2, "the idle keys' events are forgotten"


async def test_failed_sign_ins_are_throttled_per_client_and_user(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage, sign_in_failures=3, sign_in_window=600)
    await create_user(client, "alice", "right-password")
    for _ in range(3):
        assert (await client.get("/token", headers=basic("alice", "guess"))).status == 401
    throttled = await client.get("/token", headers=basic("alice", "right-password"))
    assert throttled.status == 429, "past the limit even the right password waits"
    assert 0 < int(throttled.headers["Retry-After"]) <= 600
    assert (await client.get("/api/v1/users/alice/tokens", headers=basic("alice", "right-password"))).status == 429
    form = {"grant_type": "password", "username": "alice", "password": "right-password", "service": "dockyard"}
    assert (await client.post("/token", data=form)).status == 429
    await create_user(client, "bob", "bob-password")
    assert (await client.get("/token", headers=basic("bob", "bob-password"))).status == 200, "other users are unaffected"


async def test_a_password_change_or_token_revocation_ends_the_refresh_tokens_issued_before(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice", "first-password")

    async def offline(secret: str) -> str:
        form = {"grant_type": "password", "username": "alice", "password": secret, "service": "dockyard", "access_type": "offline"}
        response = await client.post("/token", data=form)
        assert response.status == 200
        return (await response.json())["refresh_token"]

    async def refreshes(refresh: str) -> int:
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": "dockyard"}
        return (await client.post("/token", data=form)).status

    by_password = await offline("first-password")
    created = await client.post("/api/v1/users/alice/tokens", json={"name": "ci"}, headers=basic(*alice))
    pat, token_id = (await created.json())["token"], (await created.json())["id"]
    by_token = await offline(pat)
    assert await refreshes(by_password) == 200 and await refreshes(by_token) == 200
    revoked = await client.delete(f"/api/v1/users/alice/tokens/{token_id}", headers=basic(*alice))
    assert revoked.status == 204
    assert await refreshes(by_token) == 401 and await refreshes(by_password) == 200
    changed = await client.put("/api/v1/users/alice/password", json={"password": "second-password"}, headers=basic(*alice))
    assert changed.status == 204
    assert await refreshes(by_password) == 401
    assert await refreshes(await offline("second-password")) == 200
