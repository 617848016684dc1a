"""/v2/, the catalog and tag listing, with n/last pagination and Link headers."""

from __future__ import annotations

from tests.oci import error_codes, push_blob, push_image, random_blob, random_image


async def test_api_version_check(client):
    response = await client.get("/v2/")
    assert response.status == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert await response.json() == {}


async def test_every_response_carries_the_api_version_header(client):
    for method, path in [("GET", "/v2/nothing/here"), ("GET", "/v2/a/tags/list"), ("POST", "/v2/_catalog"), ("GET", "/v2/BAD/tags/list")]:
        response = await client.request(method, path)
        assert response.status >= 400
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0", path


async def test_tags_are_listed_in_order_and_paginated_with_link(client):
    image = random_image()
    tags = ["v1", "v10", "v2", "alpha", "Beta", "latest", "1.0", "_x"]
    for tag in tags:
        await push_image(client, "acme/app", image, tag)
    everything = await client.get("/v2/acme/app/tags/list")
    assert await everything.json() == {"name": "acme/app", "tags": sorted(tags)}
    assert "Link" not in everything.headers

    collected, url = [], "/v2/acme/app/tags/list?n=3"
    while url:
        page = await client.get(url)
        assert page.status == 200
        body = await page.json()
        assert len(body["tags"]) <= 3
        collected += body["tags"]
        link = page.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        if link:
            assert link.endswith('; rel="next"')
    assert collected == sorted(tags)


async def test_tags_n_and_last(client):
    image = random_image()
    for tag in ["a", "b", "c", "d"]:
        await push_image(client, "acme/app", image, tag)
    assert (await (await client.get("/v2/acme/app/tags/list?n=2")).json())["tags"] == ["a", "b"]
    assert (await (await client.get("/v2/acme/app/tags/list?n=2&last=b")).json())["tags"] == ["c", "d"]
    assert (await (await client.get("/v2/acme/app/tags/list?last=b")).json())["tags"] == ["c", "d"]
    last_page = await client.get("/v2/acme/app/tags/list?n=2&last=b")
    assert "Link" not in last_page.headers
    zero = await client.get("/v2/acme/app/tags/list?n=0")
    assert (await zero.json())["tags"] == []
    assert "Link" not in zero.headers


async def test_invalid_page_size_is_refused(client):
    await push_image(client, "acme/app", random_image(), "v1")
    for value in ("-1", "ten", "100000"):
        response = await client.get(f"/v2/acme/app/tags/list?n={value}")
        assert response.status == 400, value
        assert await error_codes(response) == ["PAGINATION_NUMBER_INVALID"]


async def test_tags_of_unknown_repository_is_name_unknown(client):
    response = await client.get("/v2/nobody/here/tags/list")
    assert response.status == 404
    assert await error_codes(response) == ["NAME_UNKNOWN"]


async def test_repository_with_blobs_but_no_tags_lists_empty(client):
    await push_blob(client, "acme/blobs-only", random_blob(10))
    response = await client.get("/v2/acme/blobs-only/tags/list")
    assert await response.json() == {"name": "acme/blobs-only", "tags": []}


async def test_catalog_lists_repositories_with_pagination(client):
    names = ["org/team/app", "org/team", "alpha", "zeta/one", "mid-dle", "mid.dle"]
    for name in names:
        await push_blob(client, name, random_blob(8))
    everything = await (await client.get("/v2/_catalog")).json()
    assert sorted(everything["repositories"]) == sorted(names)
    collected, url = [], "/v2/_catalog?n=4"
    while url:
        page = await client.get(url)
        body = await page.json()
        assert len(body["repositories"]) <= 4
        collected += body["repositories"]
        link = page.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert collected == everything["repositories"]
    assert (await (await client.get("/v2/_catalog?n=0")).json())["repositories"] == []


async def test_invalid_names_are_name_invalid(client):
    for name in ["UPPER/case", "double//slash", "trailing-", "-leading", "a" * 256, "under___three"]:
        response = await client.get(f"/v2/{name}/tags/list")
        assert response.status == 400, name
        assert await error_codes(response) == ["NAME_INVALID"], name


async def test_traversal_attempts_never_reach_the_filesystem(client, storage, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not serve")
    attempts = [
        "/v2/../../secret/tags/list",
        "/v2/%2e%2e/%2e%2e/secret/tags/list",
        "/v2/a/..%2F..%2F..%2Fsecret/tags/list",
        "/v2/a/manifests/..%2F..%2F..%2F..%2Fsecret",
        "/v2/a/blobs/sha256:..%2F..%2Fsecret",
    ]
    for path in attempts:
        response = await client.get(path)
        assert response.status in (400, 404), path
        assert b"do not serve" not in await response.read()


async def test_unknown_endpoint_and_wrong_method(client):
    response = await client.get("/v2/acme/app/something")
    assert response.status == 404
    wrong = await client.post("/v2/acme/app/manifests/latest")
    assert wrong.status == 405
    assert await error_codes(wrong) == ["UNSUPPORTED"]
