"""The web page at `/`: pages, escaping, visibility, sessions, CSRF, and a real browser run.

The fast tests drive the aiohttp app in-process; `test_browser_*` starts a registry process
with auth enabled and drives Debian's chromium with Playwright (skipped when either is absent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ocispec import mediatypes
from registry.api.app import create_app
from registry.api.web.render import human_size
from registry.api.web.session import COOKIE
from storage_backends.filesystem import FilesystemBackend
from tests.conftest import hub_env, start_registry, stop_process
from tests.hub import ADMIN, basic, bearer, create_user, hub_client
from tests.oci import Blob, Image, push_image, random_blob

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCRIPT = "<script>alert('pwned')</script>"


def configured_image(platform: tuple[str, str] = ("linux", "amd64"), **runtime: Any) -> Image:
    config = {
        "created": "2024-05-01T12:30:00Z",
        "os": platform[0],
        "architecture": platform[1],
        "config": {"Entrypoint": ["/bin/server"], "Cmd": ["--port", "8080"], "Env": ["PATH=/usr/bin", "MODE=production"], **runtime},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [
            {"created": "2024-05-01T12:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:base in /"},
            {"created": "2024-05-01T12:30:00Z", "created_by": "COPY server /bin/server", "comment": "buildkit"},
            {"created": "2024-05-01T12:30:00Z", "created_by": 'CMD ["--port", "8080"]', "empty_layer": True},
        ],
        "nonce": os.urandom(4).hex(),
    }
    return Image(Blob(json.dumps(config).encode(), mediatypes.OCI_CONFIG), [random_blob(3000), random_blob(5000)])


def image_size(image: Image) -> int:
    return len(image.config.data) + sum(len(layer.data) for layer in image.layers)


def index_of(*images: Image) -> Blob:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [
            image.descriptor(platform={"os": json.loads(image.config.data)["os"], "architecture": json.loads(image.config.data)["architecture"]})
            for image in images
        ],
    }
    return Blob(json.dumps(document).encode(), mediatypes.OCI_INDEX)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: TestClient, user: str, secret: str) -> None:
    """Sign in as `user` in this client's cookie jar, replacing any earlier session."""
    client.session.cookie_jar.clear()
    form = await (await client.get("/login")).text()
    response = await client.post(
        "/login", data={"username": user, "password": secret, "csrf": csrf_of(form), "next": "/"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()


async def push_as(client: TestClient, credentials: tuple[str, str], name: str, image: Image, tag: str = "v1") -> None:
    headers = await bearer(client, credentials, f"repository:{name}:pull,push")
    client.session.headers.update(headers)
    try:
        await push_image(client, name, image, tag)
    finally:
        client.session.headers.pop("Authorization")


async def set_repository(client: TestClient, credentials: tuple[str, str], name: str, **fields: Any) -> None:
    response = await client.patch(f"/api/v1/repositories/{name}", json=fields, headers=basic(*credentials))
    assert response.status == 200, await response.text()


async def page(client: TestClient, path: str, status: int = 200) -> str:
    response = await client.get(path)
    text = await response.text()
    assert response.status == status, (path, text[:500])
    if status < 400 or response.content_type == "text/html":
        assert response.content_type == "text/html"
    return text


@pytest.fixture
def disk(tmp_path: Path) -> FilesystemBackend:
    """For tests of sessions and forms, where the storage backend makes no difference."""
    return FilesystemBackend(tmp_path / "store")


# -- auth disabled ------------------------------------------------------------------------------
async def test_pages_render_with_auth_disabled_and_settings_are_read_only(aiohttp_client, storage):
    client = await aiohttp_client(create_app(storage))
    image = configured_image()
    await push_image(client, "team/app", image, "v1")
    host = f"{client.host}:{client.port}"

    home = await page(client, "/")
    assert 'href="/r/team/app"' in home
    assert "Sign in" not in home and "/login" not in home

    repo = await page(client, "/r/team/app")
    assert ">v1</a>" in repo
    assert image.digest[:19] in repo
    assert "linux/amd64" in repo
    assert f">{human_size(image_size(image))}<" in repo  # config and layers
    assert f"docker pull {host}/team/app:v1" in repo.replace("<wbr>", "")

    tag = await page(client, "/r/team/app/-/tags/v1")
    for layer in image.layers:
        assert layer.digest in tag
    assert image.config.digest in tag and image.digest in tag
    assert "/bin/server" in tag and "--port 8080" in tag and "MODE=production" in tag
    assert "COPY server /bin/server" in tag and "2024-05-01 12:30:00 UTC" in tag
    assert f'<code id="pull-command">docker pull {host}/team/app:v1</code>' in tag.replace("<wbr>", "")
    by_digest = await page(client, f"/r/team/app/-/manifests/{image.digest}")
    assert f"docker pull {host}/team/app@{image.digest}" in by_digest.replace("<wbr>", "")

    settings = await page(client, "/r/team/app/-/settings")
    assert "read-only" in settings and "<textarea" not in settings
    refused = await client.post("/r/team/app/-/settings", data={"description": "changed", "visibility": "public", "csrf": "x"})
    assert refused.status == 403
    assert "changed" not in await page(client, "/r/team/app")

    await page(client, "/r/team/missing", 404)
    await page(client, "/r/team/app/-/tags/nope", 404)
    await page(client, "/r/Not..A..Name", 404)
    assert (await client.get("/login")).status == 404


async def test_index_tag_lists_each_platform_with_its_size(aiohttp_client, storage):
    client = await aiohttp_client(create_app(storage))
    amd64, arm64 = configured_image(("linux", "amd64")), configured_image(("linux", "arm64"))
    for image in (amd64, arm64):
        await push_image(client, "team/multi", image)
    index = index_of(amd64, arm64)
    pushed = await client.put("/v2/team/multi/manifests/latest", data=index.data, headers={"Content-Type": mediatypes.OCI_INDEX})
    assert pushed.status == 201

    repo = await page(client, "/r/team/multi")
    assert "linux/amd64" in repo and "linux/arm64" in repo
    assert f'href="/r/team/multi/-/manifests/{amd64.digest}?index={index.digest}"' in repo
    assert f">{human_size(image_size(amd64))}<" in repo and f">{human_size(image_size(arm64))}<" in repo
    tag = await page(client, "/r/team/multi/-/tags/latest")
    assert amd64.digest in tag and arm64.digest in tag and ">index<" in tag
    child = await page(client, f"/r/team/multi/-/manifests/{arm64.digest}?index={index.digest}")
    assert arm64.layers[0].digest in child and "linux/arm64" in child
    assert f'href="/r/team/multi/-/manifests/{index.digest}">the index' in child, "a child links back to its index"
    alone = await page(client, f"/r/team/multi/-/manifests/{arm64.digest}?index={arm64.digest}")
    assert "the index" not in alone, "an index that does not list the image is not claimed as its parent"


# -- escaping and visibility ----------------------------------------------------------------------
async def test_user_provided_text_is_html_escaped_everywhere(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await create_user(client, "alice")
    image = configured_image(Env=[f"EVIL={SCRIPT}"], Labels={"x": '"><img src=x onerror=alert(1)>'})
    await push_as(client, alice, "alice/app", image)
    await set_repository(client, alice, "alice/app", visibility="public", description=f"Hello {SCRIPT} & friends")

    for path in ("/", "/r/alice/app", "/search?q=app", "/r/alice/app/-/tags/v1", f"/search?q={SCRIPT}"):
        text = await page(client, path)
        assert "<script>alert" not in text and "<img src=x" not in text, path
    repo = await page(client, "/r/alice/app")
    assert "Hello &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp; friends" in repo
    tag = await page(client, "/r/alice/app/-/tags/v1")
    assert "EVIL=&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in tag
    response = await client.get("/r/alice/app")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_private_repositories_are_hidden_from_anonymous_and_other_users(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await create_user(client, "bob")
    await push_as(client, alice, "alice/secret", configured_image())
    await push_as(client, alice, "alice/open", configured_image())
    await set_repository(client, alice, "alice/open", visibility="public")

    for who in (None, ("bob", "pw-123456")):
        if who:
            await sign_in(client, *who)
        home = await page(client, "/")
        assert "alice/open" in home and "alice/secret" not in home
        assert "alice/secret" not in await page(client, "/search?q=secret")
        paths = ["/r/alice/secret", "/r/alice/secret/-/tags/v1", "/r/alice/secret/-/manifests/sha256:" + "0" * 64]
        if who:  # a signed-out visitor is sent to sign in from every settings or delete page, whether or not it exists
            paths += ["/r/alice/secret/-/settings", "/r/alice/secret/-/delete", "/r/alice/secret/-/delete-tag/v1"]
        else:
            for path in ("/r/alice/secret/-/settings", "/r/alice/secret/-/delete", "/r/alice/absent/-/delete-tag/v1"):
                redirect = await client.get(path, allow_redirects=False)
                assert redirect.status == 303 and redirect.headers["Location"] == "/login?next=" + quote(path, safe=""), path
        for path in paths:
            hidden = await page(client, path, 404)
            missing = await page(client, path.replace("secret", "absent"), 404)
            assert hidden.replace("secret", "absent") == missing  # exactly like a repository that does not exist

    await sign_in(client, *alice)
    assert "alice/secret" in await page(client, "/")
    assert "alice/secret" in await page(client, "/search?q=secret")
    assert ">v1</a>" in await page(client, "/r/alice/secret")
    await sign_in(client, *ADMIN)
    assert "alice/secret" in await page(client, "/")


# -- sessions ----------------------------------------------------------------------------------
async def test_sign_in_with_wrong_password_shows_an_error_and_no_session(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    await create_user(client, "alice", "right-password")
    form = await page(client, "/login")
    response = await client.post("/login", data={"username": "alice", "password": "wrong", "csrf": csrf_of(form)}, allow_redirects=False)
    text = await response.text()
    assert response.status == 200
    assert "Incorrect username, password or access token." in text
    assert 'value="alice"' in text  # the username is kept, the password is not
    assert "Sign out" not in await page(client, "/")


async def test_sign_in_needs_the_forms_csrf_token(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    await create_user(client, "alice", "right-password")
    response = await client.post("/login", data={"username": "alice", "password": "right-password"}, allow_redirects=False)
    assert response.status == 200 and "expired" in await response.text()
    assert "Sign out" not in await page(client, "/")


async def test_sign_in_sets_a_signed_httponly_lax_cookie_and_sign_out_clears_it(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    await create_user(client, "alice", "right-password")
    form = await page(client, "/login?next=/r/alice/app")
    response = await client.post(
        "/login", data={"username": "alice", "password": "right-password", "csrf": csrf_of(form), "next": "/r/alice/app"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/r/alice/app"
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/" and not cookie["secure"]
    assert int(cookie["max-age"]) > 3600

    home = await page(client, "/")
    assert "Sign out" in home and ">alice<" in home
    forged = cookie.value[:-2] + ("AA" if not cookie.value.endswith("AA") else "BB")
    jar = client.session.cookie_jar
    jar.clear()
    jar.update_cookies({COOKIE: forged}, response_url=client.make_url("/"))
    assert "Sign out" not in await page(client, "/")
    jar.clear()
    jar.update_cookies({COOKIE: cookie.value}, response_url=client.make_url("/"))
    assert "Sign out" in await page(client, "/")

    bad = await client.post("/logout", data={"csrf": "not-it"}, allow_redirects=False)
    assert bad.status == 403
    assert "Sign out" in await page(client, "/")
    good = await client.post("/logout", data={"csrf": csrf_of(await page(client, "/"))}, allow_redirects=False)
    assert good.status == 303
    assert "Sign out" not in await page(client, "/")
    # signing out ends the session itself: the old cookie, replayed, proves nothing
    jar.clear()
    jar.update_cookies({COOKIE: cookie.value}, response_url=client.make_url("/"))
    assert "Sign out" not in await page(client, "/")


async def test_sign_in_never_redirects_off_site(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    await create_user(client, "alice", "right-password")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        form = await page(client, "/login")
        response = await client.post(
            "/login", data={"username": "alice", "password": "right-password", "csrf": csrf_of(form), "next": target},
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/", target


async def test_personal_access_token_session_ends_when_the_token_is_revoked(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await create_user(client, "alice", "right-password")
    created = await (await client.post("/api/v1/users/alice/tokens", json={"name": "web"}, headers=basic(*alice))).json()
    await sign_in(client, "alice", created["token"])
    assert "Sign out" in await page(client, "/")
    assert (await client.delete(f"/api/v1/users/alice/tokens/{created['id']}", headers=basic(*alice))).status == 204
    assert "Sign out" not in await page(client, "/")

    await sign_in(client, *alice)
    changed = await client.put("/api/v1/users/alice/password", json={"password": "new-password"}, headers=basic(*alice))
    assert changed.status == 204
    assert "Sign out" not in await page(client, "/")  # a password change ends sessions


# -- settings ------------------------------------------------------------------------------------
async def test_settings_form_refuses_non_admins_and_bad_csrf(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    await push_as(client, alice, "alice/app", configured_image())
    await set_repository(client, alice, "alice/app", visibility="public", description="original")

    await sign_in(client, *bob)
    assert "Settings" not in await page(client, "/r/alice/app")
    await page(client, "/r/alice/app/-/settings", 403)
    bob_csrf = csrf_of(await page(client, "/"))
    refused = await client.post("/r/alice/app/-/settings", data={"description": "bob was here", "visibility": "public", "csrf": bob_csrf})
    assert refused.status == 403

    await sign_in(client, *alice)
    form = await page(client, "/r/alice/app/-/settings")
    assert "original</textarea>" in form
    for token in ("", "forged", bob_csrf):
        bad = await client.post("/r/alice/app/-/settings", data={"description": "csrf", "visibility": "private", "csrf": token})
        assert bad.status == 403
    invalid = await client.post("/r/alice/app/-/settings", data={"description": "x", "visibility": "secret", "csrf": csrf_of(form)})
    assert invalid.status == 400 and "visibility must be public or private" in await invalid.text()
    record = await (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).json()
    assert record["description"] == "original" and record["visibility"] == "public"

    saved = await client.post(
        "/r/alice/app/-/settings", data={"description": "new words", "visibility": "private", "csrf": csrf_of(form)}, allow_redirects=False
    )
    assert saved.status == 303 and saved.headers["Location"] == "/r/alice/app?done=saved"
    assert "new words" in await page(client, "/r/alice/app")
    assert "new words" in await page(client, "/search?q=words")  # the search index follows
    client.session.cookie_jar.clear()
    await page(client, "/r/alice/app", 404)  # private now


async def test_organization_admins_and_site_admins_edit_settings(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    owner = await create_user(client, "owner")
    writer = await create_user(client, "writer")
    assert (await client.post("/api/v1/orgs", json={"name": "acme"}, headers=basic(*owner))).status == 201
    assert (await client.put("/api/v1/orgs/acme/members/writer", json={"role": "write"}, headers=basic(*owner))).status == 200
    await push_as(client, writer, "acme/api", configured_image())

    await sign_in(client, *writer)
    assert ">v1</a>" in await page(client, "/r/acme/api")
    await page(client, "/r/acme/api/-/settings", 403)
    for who, words in ((owner, "by the org admin"), (ADMIN, "by the site admin")):
        await sign_in(client, *who)
        form = await page(client, "/r/acme/api/-/settings")
        response = await client.post("/r/acme/api/-/settings", data={"description": words, "visibility": "private", "csrf": csrf_of(form)})
        assert response.status == 200 and words in await response.text()


async def test_distribution_search_and_token_routes_are_untouched(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    assert (await client.get("/v2/")).status == 401
    assert (await client.get("/v1/search", params={"q": "x"})).status == 200
    assert (await client.get("/token", params={"service": "dockyard"})).status == 200
    assert (await client.get("/api/v1/users", headers=basic(*ADMIN))).status == 200
    assert (await client.get("/static/style.css")).status == 200


# -- a real browser ------------------------------------------------------------------------------
@pytest.fixture
def chromium() -> str:
    assert shutil.which(CHROMIUM), "Debian's chromium is required: `make test` installs it with apt-get"
    return CHROMIUM


async def test_browser_signs_in_searches_and_reads_an_image(chromium: str, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    password = "browser-admin-password"
    registry = start_registry(tmp_path / "data", env=hub_env(("root", password)))
    image = configured_image()
    try:
        async with aiohttp.ClientSession(base_url=registry.url) as http:
            created = await http.post("/api/v1/users", json={"name": "alice", "password": "alice-password"}, headers=basic("root", password))
            assert created.status == 201
            granted = await http.get(
                "/token", params={"service": "dockyard", "scope": "repository:alice/webapp:pull,push"},
                headers=basic("alice", "alice-password"),
            )
            token = (await granted.json())["token"]
        async with aiohttp.ClientSession(base_url=registry.url, headers={"Authorization": f"Bearer {token}"}) as pusher:
            await push_image(pusher, "alice/webapp", image, "v1")  # type: ignore[arg-type]
            described = await pusher.patch(
                "/api/v1/repositories/alice/webapp", json={"description": "The web application"},
                headers=basic("alice", "alice-password"),
            )
            assert described.status == 200

        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=chromium, args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1200, "height": 900},
            )
            try:
                await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=registry.url)
                browser = context.pages[0] if context.pages else await context.new_page()
                browser.set_default_timeout(10_000)
                await browser.goto(registry.url + "/")
                await expect(browser.locator("main")).not_to_contain_text("alice/webapp")  # private, anonymous

                await browser.click("text=Sign in")
                await browser.fill("#username", "alice")
                await browser.fill("#password", "alice-password")
                await browser.click("button[type=submit]")
                await expect(browser.locator(".who")).to_have_text("alice")

                await browser.fill("input[name=q]", "webapp")
                await browser.press("input[name=q]", "Enter")
                await expect(browser.locator(".repos")).to_contain_text("The web application")
                await browser.click("a.repo-name:has-text('alice/webapp')")
                await expect(browser.locator("h1")).to_have_text("alice/webapp")

                await browser.click("a.tag:has-text('v1')")
                digests = await browser.locator("tr.layer button.copy").evaluate_all("buttons => buttons.map(b => b.dataset.copyText)")
                assert digests == [layer.digest for layer in image.layers]
                pull = f"docker pull {registry.host}:{registry.port}/alice/webapp:v1"
                await expect(browser.locator("#pull-command")).to_have_text(pull)
                await browser.click("button[data-copy]")
                await expect(browser.locator("button[data-copy]")).to_have_text("Copied")
                assert await browser.evaluate("navigator.clipboard.readText()") == pull
                if os.environ.get("DOCKYARD_WEB_SCREENSHOT"):
                    await browser.screenshot(path=os.environ["DOCKYARD_WEB_SCREENSHOT"], full_page=True)
            finally:
                await context.close()
    finally:
        stop_process(registry.process)
