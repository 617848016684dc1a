"""Repository search: docker search's response shape, ranking, visibility, pagination."""

from __future__ import annotations

import asyncio
import time

from tests.hub import ADMIN, basic, bearer, create_user, hub_client
from tests.oci import push_blob, random_blob


async def make_repository(client, name: str, description: str = "", public: bool = True, owner=ADMIN) -> None:
    headers = await bearer(client, owner, f"repository:{name}:pull,push")
    client.session.headers.update(headers)
    try:
        await push_blob(client, name, random_blob(8))
    finally:
        client.session.headers.pop("Authorization", None)
    body = {"description": description, "visibility": "public" if public else "private"}
    response = await client.patch(f"/api/v1/repositories/{name}", json=body, headers=basic(*owner))
    assert response.status == 200, await response.text()


async def test_search_shape_and_ranking(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    await make_repository(client, "acme/redis-tools", "helpers for redis")
    await make_repository(client, "redis", "the official redis image")
    await make_repository(client, "someone/cache", "a redis-compatible cache")
    await make_repository(client, "bitnami/redis", "packaged redis")
    await make_repository(client, "other/unrelated", "nothing to see")
    response = await client.get("/v1/search", params={"q": "redis", "n": "10"})
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"query", "num_results", "num_pages", "page", "page_size", "results"}
    assert body["query"] == "redis" and body["num_results"] == 4 and body["page"] == 1 and body["page_size"] == 10
    names = [result["name"] for result in body["results"]]
    # exact (full or last component), then prefix, then substring, then description
    assert names == ["bitnami/redis", "redis", "acme/redis-tools", "someone/cache"]
    first = body["results"][1]
    assert first == {"name": "redis", "description": "the official redis image", "star_count": 0, "pull_count": 0, "is_official": True, "is_automated": False}


async def test_stars_break_ties(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    fan = await create_user(client, "fan")
    await make_repository(client, "a/web")
    await make_repository(client, "b/web")
    assert (await client.put("/api/v1/repositories/b/web/-/star", headers=basic(*fan))).status == 200
    body = await (await client.get("/v1/search", params={"q": "web"})).json()
    assert [(r["name"], r["star_count"]) for r in body["results"]] == [("b/web", 1), ("a/web", 0)]


async def test_private_repositories_only_for_those_who_may_pull(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await create_user(client, "bob")
    await make_repository(client, "alice/secret-db", "private", public=False, owner=alice)
    await make_repository(client, "alice/open-db", "public", public=True, owner=alice)

    async def names(headers=None):
        body = await (await client.get("/v1/search", params={"q": "db"}, headers=headers or {})).json()
        return [result["name"] for result in body["results"]]

    assert await names() == ["alice/open-db"]
    assert await names(basic("bob", "pw-123456")) == ["alice/open-db"]
    assert await names(basic(*alice)) == ["alice/open-db", "alice/secret-db"]
    assert await names(await bearer(client, alice)) == ["alice/open-db", "alice/secret-db"]
    assert (await client.get("/v1/search", params={"q": "db"}, headers=basic("alice", "wrong"))).status == 401


async def test_pagination(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    for index in range(7):
        await make_repository(client, f"team/app{index}")
    first = await (await client.get("/v1/search", params={"q": "app", "n": "3"})).json()
    third = await (await client.get("/v1/search", params={"q": "app", "n": "3", "page": "3"})).json()
    assert first["num_results"] == 7 and first["num_pages"] == 3
    assert [r["name"] for r in first["results"]] == ["team/app0", "team/app1", "team/app2"]
    assert [r["name"] for r in third["results"]] == ["team/app6"]
    assert (await client.get("/v1/search", params={"q": "app", "n": "0"})).status == 400


async def test_search_without_auth_lists_everything_and_sees_other_processes_writes(aiohttp_client, storage):
    from registry.api.app import create_app

    first = await aiohttp_client(create_app(storage))
    second = await aiohttp_client(create_app(storage))
    await push_blob(first, "acme/app", random_blob(8))
    found = lambda response: [r["name"] for r in response["results"]]  # noqa: E731
    assert found(await (await first.get("/v1/search", params={"q": "acme"})).json()) == ["acme/app"], "the pushing process at once"
    deadline = time.monotonic() + 5  # another process within the few milliseconds the background row write takes
    while not found(await (await second.get("/v1/search", params={"q": "acme"})).json()):
        assert time.monotonic() < deadline, "another process never saw the new repository"
        await asyncio.sleep(0.01)


async def test_admin_routes_never_shadow_repository_names(aiohttp_client, storage):
    """`star`, `webhooks`: valid last components of repository names, so sub-resources sit under /-/."""
    client = await hub_client(aiohttp_client, storage)
    await make_repository(client, "alice/webhooks", "a repository named like a sub-resource")
    response = await client.get("/api/v1/repositories/alice/webhooks", headers=basic(*ADMIN))
    assert response.status == 200
    assert (await response.json())["name"] == "alice/webhooks"


async def test_another_replica_sees_an_edit_at_once_even_of_the_same_size(aiohttp_client, storage):
    """S3 modification times have one-second resolution: the index cache must not rely on them."""
    first = await hub_client(aiohttp_client, storage)
    second = await hub_client(aiohttp_client, storage)
    await make_repository(first, "acme/tool", "aaaa")

    async def description_seen_by_second() -> str:
        body = await (await second.get("/v1/search", params={"q": "tool"})).json()
        return body["results"][0]["description"]

    assert await description_seen_by_second() == "aaaa"
    for text in ("bbbb", "cccc"):
        response = await first.patch("/api/v1/repositories/acme/tool", json={"description": text}, headers=basic(*ADMIN))
        assert response.status == 200
        assert await description_seen_by_second() == text


async def test_organization_members_find_its_private_repositories_and_pages_past_the_end_keep_the_total(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    await create_user(client, "carol")
    assert (await client.post("/api/v1/orgs", json={"name": "team"}, headers=basic(*alice))).status == 201
    assert (await client.put("/api/v1/orgs/team/members/bob", json={"role": "read"}, headers=basic(*alice))).status == 200
    await make_repository(client, "team/internal-db", "private", public=False)
    await make_repository(client, "team/public-db", "public")

    async def found(credentials, query="db", page="1"):
        body = await (await client.get("/v1/search", params={"q": query, "page": page, "n": "1"}, headers=basic(*credentials))).json()
        return body["num_results"], [result["name"] for result in body["results"]]

    assert await found(bob) == (2, ["team/internal-db"]), "a read member sees the organization's private repositories"
    assert await found(("carol", "pw-123456")) == (1, ["team/public-db"])
    assert await found(bob, page="5") == (2, []), "past the last page: no results, the same total"
    assert await found(bob, query="te") == (2, ["team/internal-db"]), "queries shorter than a trigram still match substrings"
    assert await found(bob, query="PUBLIC") == (1, ["team/public-db"]), "case does not matter"
