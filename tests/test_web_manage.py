"""Managing the Hub from the web page, driven in-process: READMEs, deleting tags and
repositories, tokens with scopes, passwords, sign-out everywhere, organizations, webhooks,
stars, lists, and error pages. Every change is checked through the APIs, not the page alone.
"""

from __future__ import annotations

import re
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from registry.api.context import SERVICES
from tests.hub import ADMIN, basic, create_user, hub_client, token
from tests.oci import push_image
from tests.test_web import configured_image, csrf_of, disk, page, push_as, set_repository, sign_in  # noqa: F401 (fixture)

README = """# Web application

Run it with **care**:

<script>alert('pwned')</script>

[docs](https://example.com/docs) [evil](javascript:alert(1)) <a href="javascript:alert(2)">raw</a>
<img src=x onerror="alert(3)">

| option | default |
|---|---|
| port | 8080 |
"""


async def post(client: TestClient, path: str, form_page: str, status: int = 303, **data: Any) -> Any:
    response = await client.post(path, data={"csrf": csrf_of(await page(client, form_page)), **data}, allow_redirects=False)
    assert response.status == status, (path, (await response.text())[:800])
    return response


def granted(response: dict[str, Any]) -> list[str]:
    """The actions a token response grants on its one repository."""
    access = jwt.decode(response["token"], options={"verify_signature": False})["access"]
    return access[0]["actions"] if access else []


async def tags_of(client: TestClient, credentials: tuple[str, str], name: str) -> list[str]:
    headers = {"Authorization": f"Bearer {(await token(client, credentials, f'repository:{name}:pull'))['token']}"}
    response = await client.get(f"/v2/{name}/tags/list", headers=headers)
    return (await response.json()).get("tags", []) if response.status == 200 else []


async def owner_and_repository(client: TestClient, name: str = "alice/app", *tags: str) -> tuple[str, str]:
    alice = await create_user(client, "alice")
    for tag in tags or ("v1",):
        await push_as(client, alice, name, configured_image(), tag)
    return alice


# -- README ------------------------------------------------------------------------------------
async def test_readme_is_rendered_as_markdown_with_scripts_and_javascript_links_neutralised(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client)
    await set_repository(client, alice, "alice/app", full_description=README)
    await sign_in(client, *alice)
    repo = await page(client, "/r/alice/app")
    readme = repo[repo.index('<section class="readme'):repo.index("</section>")]
    assert "<h1>Web application</h1>" in readme and "<strong>care</strong>" in readme and "<td>8080</td>" in readme
    assert '<a href="https://example.com/docs" rel="noopener noreferrer nofollow">docs</a>' in readme
    assert "<script" not in readme and "<img" not in readme and "<a href=\"javascript" not in readme
    assert not re.search(r'<a[^>]*href="\s*javascript', readme, re.IGNORECASE), "no live javascript: link"
    assert "&lt;script&gt;alert('pwned')&lt;/script&gt;" in readme, "raw HTML is shown as text"


async def test_settings_preview_renders_the_readme_without_saving_and_save_keeps_it(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client)
    await sign_in(client, *alice)
    form = "/r/alice/app/-/settings"
    preview = await post(client, form, form, 200, description="short", full_description="## Usage\n\n<script>x</script>", visibility="private",
                         action="preview")  # fmt: skip
    text = await preview.text()
    assert "<h2>Usage</h2>" in text and "<script>x</script>" not in text and "not saved yet" in text
    record = await (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).json()
    assert record["full_description"] == "" and record["description"] == ""
    await post(client, form, form, description="short", full_description="## Usage", visibility="public", action="save")
    record = await (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).json()
    assert (record["description"], record["full_description"], record["visibility"]) == ("short", "## Usage", "public")
    too_long = await post(client, form, form, 400, description="x", full_description="y" * 25_001, visibility="public")
    assert "README is longer than 25000" in await too_long.text()


# -- deleting ----------------------------------------------------------------------------------
async def test_tags_are_deleted_by_writers_after_confirmation_and_readers_get_neither_button_nor_access(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    reader = await create_user(client, "reader")
    writer = await create_user(client, "writer")
    assert (await client.post("/api/v1/orgs", json={"name": "team"}, headers=basic(*ADMIN))).status == 201
    for user, role in (("reader", "read"), ("writer", "write")):
        assert (await client.put(f"/api/v1/orgs/team/members/{user}", json={"role": role}, headers=basic(*ADMIN))).status == 200
    for tag in ("v1", "v2"):
        await push_as(client, writer, "team/app", configured_image(), tag)

    await sign_in(client, *reader)
    assert "/-/delete-tag/v1" not in await page(client, "/r/team/app")
    await page(client, "/r/team/app/-/delete-tag/v1", 403)
    refused = await client.post("/r/team/app/-/delete-tag/v1", data={"csrf": csrf_of(await page(client, "/r/team/app"))})
    assert refused.status == 403
    assert sorted(await tags_of(client, reader, "team/app")) == ["v1", "v2"]

    await sign_in(client, *writer)
    repo = await page(client, "/r/team/app")
    assert 'href="/r/team/app/-/delete-tag/v1"' in repo
    confirm = await page(client, "/r/team/app/-/delete-tag/v1")
    assert "Delete the tag v1?" in confirm and "garbage collection" in confirm
    forged = await client.post("/r/team/app/-/delete-tag/v1", data={"csrf": "forged"})
    assert forged.status == 403
    done = await post(client, "/r/team/app/-/delete-tag/v1", "/r/team/app/-/delete-tag/v1")
    assert done.headers["Location"] == "/r/team/app?done=tag-deleted"
    assert await tags_of(client, writer, "team/app") == ["v2"]
    after = await page(client, done.headers["Location"])
    assert "The tag was deleted" in after and ">v1</a>" not in after
    await page(client, "/r/team/app/-/delete-tag/v1", 404)


async def test_deleting_a_repository_needs_its_name_typed_and_removes_content_settings_and_webhooks(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client, "alice/app")
    await push_as(client, alice, "alice/app/nested", configured_image())
    await set_repository(client, alice, "alice/app", description="doomed", visibility="public")
    hook = await client.post("/api/v1/repositories/alice/app/-/webhooks", json={"url": "https://hooks.example.com/x"}, headers=basic(*alice))
    assert hook.status == 201
    writer = await create_user(client, "bob")
    del writer

    await sign_in(client, "bob", "pw-123456")
    await page(client, "/r/alice/app/-/delete", 403)  # public, so bob sees it, but may not delete it
    await sign_in(client, *alice)
    wrong = await post(client, "/r/alice/app/-/delete", "/r/alice/app/-/delete", 400, confirm="alice/ap")
    assert "Type the repository" in await wrong.text()
    assert await tags_of(client, alice, "alice/app") == ["v1"]
    done = await post(client, "/r/alice/app/-/delete", "/r/alice/app/-/delete", confirm="alice/app")
    assert done.headers["Location"] == "/?done=repository-deleted"

    assert await tags_of(client, alice, "alice/app") == []
    assert (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).status == 404
    catalog = await (await client.get("/v2/_catalog", headers={"Authorization": f"Bearer {(await token(client, ADMIN, 'registry:catalog:*'))['token']}"})).json()
    assert catalog["repositories"] == ["alice/app/nested"], "a nested repository is another repository"
    assert await tags_of(client, alice, "alice/app/nested") == ["v1"]
    await page(client, "/r/alice/app", 404)
    await push_as(client, alice, "alice/app", configured_image(), "again")  # the name is free again, with fresh settings
    record = await (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).json()
    assert record["description"] == "" and record["visibility"] == "private"
    assert (await (await client.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic(*alice))).json())["webhooks"] == []


async def test_admin_api_deletes_a_repository_for_its_admins_only(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client, "alice/app")
    bob = await create_user(client, "bob")
    await set_repository(client, alice, "alice/app", visibility="public")
    assert (await client.delete("/api/v1/repositories/alice/app", headers=basic(*bob))).status == 403
    assert (await client.delete("/api/v1/repositories/alice/app", headers=basic(*alice))).status == 204
    assert (await client.delete("/api/v1/repositories/alice/app", headers=basic(*alice))).status == 404


# -- tokens, password, sessions -------------------------------------------------------------------
async def test_tokens_are_created_with_a_scope_shown_once_listed_with_last_use_and_revoked(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client, "alice/app")
    await sign_in(client, *alice)
    created = await post(client, "/account/tokens", "/account", 200, name="ci", scope="read")
    secret = re.search(r'<code id="new-token">(dkp_[^<]+)</code>', await created.text())
    assert secret, "the secret is shown"
    secret_text = secret.group(1)
    assert secret_text not in await page(client, "/account"), "shown only once"

    pull = await token(client, ("alice", secret_text), "repository:alice/app:pull,push")
    assert granted(pull) == ["pull"], "a read token never pushes"
    account = await page(client, "/account")
    row = account[account.index('<td class="token-name">ci</td>'):]
    assert "<td>read</td>" in row[:300] and "never" not in row[:600], "last use is listed"
    refused = await client.post("/api/v1/users/alice/tokens", json={"name": "escalate"}, headers=basic("alice", secret_text))
    assert refused.status == 403, "a read token does not manage the account"

    token_id = secret_text.removeprefix("dkp_").split("_")[0]
    await post(client, f"/account/tokens/{token_id}/revoke", "/account")
    assert (await client.get("/api/v1/repositories/alice/app", headers=basic("alice", secret_text))).status == 401
    assert '<td class="token-name">ci</td>' not in await page(client, "/account")
    bad = await post(client, "/account/tokens", "/account", 400, name="x", scope="root")
    assert "Choose one of the scopes" in await bad.text()


async def test_a_session_signed_in_with_a_narrow_token_cannot_manage_the_account(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client, "alice/app")
    made = await (await client.post("/api/v1/users/alice/tokens", json={"name": "pusher", "scope": "write"}, headers=basic(*alice))).json()
    assert made["scope"] == "write"
    await sign_in(client, "alice", made["token"])
    await page(client, "/account", 403)
    await page(client, "/r/alice/app/-/settings", 403)  # settings need admin, a write token has no admin
    assert ">v1</a>" in await page(client, "/r/alice/app")
    assert "/-/delete-tag/" not in await page(client, "/r/alice/app"), "and no delete"


async def test_changing_the_password_checks_the_old_one_keeps_this_browser_and_ends_other_sessions(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    await create_user(client, "alice", "old-password")
    other = await hub_client(aiohttp_client, disk)  # a second browser, same registry storage
    await sign_in(other, "alice", "old-password")
    assert "Sign out" in await page(other, "/")

    await sign_in(client, "alice", "old-password")
    wrong = await post(client, "/account/password", "/account", 400, current="nope", new="new-password", repeat="new-password")
    assert "current password is not right" in await wrong.text()
    differ = await post(client, "/account/password", "/account", 400, current="old-password", new="new-password", repeat="other-password")
    assert "differ" in await differ.text()
    await post(client, "/account/password", "/account", current="old-password", new="new-password", repeat="new-password")
    assert "Sign out" in await page(client, "/account?done=password-changed")
    assert (await client.get("/api/v1/users/alice/tokens", headers=basic("alice", "old-password"))).status == 401
    assert (await client.get("/api/v1/users/alice/tokens", headers=basic("alice", "new-password"))).status == 200
    assert "Sign out" not in await page(other, "/")


async def test_sign_out_everywhere_ends_other_sessions_and_refresh_tokens_but_keeps_this_one(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    await create_user(client, "alice", "alice-password")
    other = await hub_client(aiohttp_client, disk)
    await sign_in(other, "alice", "alice-password")
    refresh = await client.post("/token", data={"grant_type": "password", "service": "dockyard", "username": "alice",
                                                "password": "alice-password", "access_type": "offline", "client_id": "test"})  # fmt: skip
    refresh_token = (await refresh.json())["refresh_token"]

    await sign_in(client, "alice", "alice-password")
    await post(client, "/account/sessions/end", "/account")
    assert "Sign out" in await page(client, "/account")
    assert "Sign out" not in await page(other, "/")
    again = await client.post("/token", data={"grant_type": "refresh_token", "service": "dockyard", "refresh_token": refresh_token, "client_id": "test"})
    assert again.status == 401
    await sign_in(other, "alice", "alice-password")
    assert "Sign out" in await page(other, "/"), "signing in again works"


async def test_account_pages_send_signed_out_visitors_to_sign_in(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    redirect = await client.get("/account", allow_redirects=False)
    assert redirect.status == 303 and redirect.headers["Location"] == "/login?next=%2Faccount"


# -- organizations ------------------------------------------------------------------------------
async def test_organization_admins_add_change_and_remove_members_and_a_removed_member_loses_access(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    stranger = await create_user(client, "carol")
    await sign_in(client, *alice)
    created = await post(client, "/orgs", "/account", name="acme")
    assert created.headers["Location"] == "/u/acme?done=organization-created"
    await post(client, "/u/acme/-/members", "/u/acme", user="bob", role="read")
    await push_as(client, alice, "acme/api", configured_image())
    assert await tags_of(client, bob, "acme/api") == ["v1"]
    assert granted(await token(client, bob, "repository:acme/api:push")) == []
    await post(client, "/u/acme/-/members", "/u/acme", user="bob", role="write")
    assert granted(await token(client, bob, "repository:acme/api:push")) == ["push"]
    missing = await post(client, "/u/acme/-/members", "/u/acme", 400, user="nobody", role="read")
    assert "no user" in await missing.text()

    await sign_in(client, *bob)
    org = await page(client, "/u/acme")
    assert "acme/api" in org and ">bob</a>" in org and "/-/members/bob/remove" not in org, "members see, only admins manage"
    assert (await client.post("/u/acme/-/members", data={"csrf": csrf_of(org), "user": "carol", "role": "admin"})).status == 403
    await sign_in(client, *stranger)
    outside = await page(client, "/u/acme")
    assert ">bob</a>" not in outside and "acme/api" not in outside, "strangers see neither members nor private repositories"

    await sign_in(client, *alice)
    last = await post(client, "/u/acme/-/members/alice/remove", "/u/acme", 400)
    assert "at least one admin" in await last.text()
    await post(client, "/u/acme/-/members/bob/remove", "/u/acme")
    assert await tags_of(client, bob, "acme/api") == []
    members = (await (await client.get("/api/v1/orgs/acme", headers=basic(*alice))).json())["members"]
    assert members == {"alice": "admin"}


async def test_namespace_page_lists_what_the_visitor_may_see(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await create_user(client, "alice")
    await push_as(client, alice, "alice/open", configured_image())
    await push_as(client, alice, "alice/secret", configured_image())
    await set_repository(client, alice, "alice/open", visibility="public", description="Open to all")
    anonymous = await page(client, "/u/alice")
    assert "alice/open" in anonymous and "Open to all" in anonymous and "alice/secret" not in anonymous
    await sign_in(client, *alice)
    assert "alice/secret" in await page(client, "/u/alice")
    await page(client, "/u/nobody", 404)
    await page(client, "/u/Bad..Name", 404)


# -- lists, stars, webhooks, errors ----------------------------------------------------------------
async def test_lists_sort_page_both_ways_and_show_counts(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await create_user(client, "alice")
    for index in range(27):
        await push_as(client, alice, f"alice/repo{index:02d}", configured_image(), "v1")
    await push_as(client, alice, "alice/repo05", configured_image(), "v2")
    await client.put("/api/v1/repositories/alice/repo03/-/star", headers=basic(*alice))
    await client.server.app[SERVICES].activity.flush()  # push times are written in batches
    await sign_in(client, *alice)

    first = await page(client, "/")
    assert "27" in first and "alice/repo00" in first and "alice/repo25" not in first
    assert 'href="/?page=2" rel="next"' in first and 'rel="prev"' not in first
    second = await page(client, "/?page=2")
    assert "alice/repo25" in second and 'href="/" rel="prev"' in second and 'rel="next"' not in second
    names = re.findall(r'class="repo-name" href="/r/([^"]+)"', await page(client, "/?sort=pushed"))
    assert names[:2] == ["alice/repo05", "alice/repo26"], "newest push first (repo05 got a second tag last)"
    starred = re.findall(r'class="repo-name" href="/r/([^"]+)"', await page(client, "/?sort=stars"))
    assert starred[0] == "alice/repo03"
    assert "2 tags" in await page(client, "/search?q=repo05") and "1 tag<" in first

    prompt = await page(client, "/search")
    assert "alice/repo" not in prompt and 'id="q"' in prompt, "an empty search lists nothing"
    nothing = await page(client, "/search?q=zebra")
    assert "No repositories match “zebra”" in nothing
    by_name = re.findall(r'class="repo-name" href="/r/([^"]+)"', await page(client, "/search?q=repo&sort=name&page=2"))
    assert by_name == ["alice/repo25", "alice/repo26"]


async def test_tags_are_filtered_and_sorted_and_each_has_copy_buttons(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client, "alice/app", "1.0", "1.1", "2.0-rc", "latest")
    await sign_in(client, *alice)
    filtered = await page(client, "/r/alice/app?tags=1.")
    assert re.findall(r'class="tag" href="[^"]+">([^<]+)<', filtered) == ["1.1", "1.0"]
    by_name = await page(client, "/r/alice/app?sort=name")
    assert re.findall(r'class="tag" href="[^"]+">([^<]+)<', by_name) == ["1.0", "1.1", "2.0-rc", "latest"]
    host = f"{client.host}:{client.port}"
    assert f'data-copy-text="docker pull {host}/alice/app:2.0-rc"' in by_name
    assert re.search(r'data-copy-text="sha256:[0-9a-f]{64}"', by_name), "digests are shortened, with the full one to copy"
    assert "No tag matches “zzz”" in await page(client, "/r/alice/app?tags=zzz")


async def test_star_button_stars_and_unstars(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client)
    await sign_in(client, *alice)
    await post(client, "/r/alice/app/-/star", "/r/alice/app", star="on")
    record = await (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).json()
    assert record["star_count"] == 1 and record["starred"]
    assert 'aria-pressed="true"' in await page(client, "/r/alice/app")
    await post(client, "/r/alice/app/-/star", "/r/alice/app", star="off")
    assert (await (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).json())["star_count"] == 0


async def test_webhooks_are_added_and_removed_in_settings_with_their_deliveries(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client)
    await sign_in(client, *alice)
    form = "/r/alice/app/-/settings"
    bad = await post(client, "/r/alice/app/-/webhooks", form, 400, url="ftp://nope", event_push="on")
    assert "The webhook was not added" in await bad.text()
    await post(client, "/r/alice/app/-/webhooks", form, url="https://hooks.example.com/ci", event_push="on", secret="s3cret")
    hooks = (await (await client.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic(*alice))).json())["webhooks"]
    assert [(hook["url"], hook["events"], hook["signed"]) for hook in hooks] == [("https://hooks.example.com/ci", ["push"], True)]
    settings = await page(client, form)
    assert "https://hooks.example.com/ci" in settings and "s3cret" not in settings
    await post(client, f"/r/alice/app/-/webhooks/{hooks[0]['id']}/remove", form)
    assert (await (await client.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic(*alice))).json())["webhooks"] == []


async def test_unknown_pages_are_styled_html_for_browsers_and_json_for_api_clients(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk)
    browser = await client.get("/no/such/page", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status == 404 and browser.content_type == "text/html"
    text = await browser.text()
    assert '<html lang="en">' in text and "<title>Page not found · Dockyard</title>" in text
    for path in ("/static/missing.css", "/logout"):  # a missing file; a form's address opened with GET
        other = await client.get(path, headers={"Accept": "text/html"})
        assert other.status in (404, 405) and other.content_type == "text/html" and '<html lang="en">' in await other.text(), path
    assert (await client.get("/logout", headers={"Accept": "text/html"})).headers["Allow"] == "POST"
    api = await client.get("/no/such/page")
    assert api.status == 404 and api.content_type == "application/json"
    assert (await api.json())["errors"][0]["code"] == "NOT_FOUND"


async def test_auth_disabled_pages_offer_no_changes(aiohttp_client, disk):
    from registry.api.app import create_app

    client = await aiohttp_client(create_app(disk))
    await push_image(client, "team/app", configured_image(), "v1")
    repo = await page(client, "/r/team/app")
    assert "delete-tag" not in repo and "/-/star" not in repo
    assert (await client.get("/account")).status == 404
    assert (await client.post("/r/team/app/-/delete-tag/v1", data={})).status == 403
    assert (await client.post("/r/team/app/-/delete", data={"confirm": "team/app"})).status == 403
    assert "team/app" in await page(client, "/u/team")


async def test_offline_cli_creates_scoped_tokens_the_registry_honours(aiohttp_client, tmp_path):
    import subprocess
    import sys

    from registry.api.app import create_app
    from storage_backends.filesystem import FilesystemBackend
    from tests.hub import hub_settings

    root = tmp_path / "store"
    run = [sys.executable, "-m", "registry"]
    subprocess.run([*run, "user", "add", "alice", "--password-stdin", "--storage-root", str(root)], input=b"alice-password", check=True)
    made = subprocess.run([*run, "user", "token", "create", "alice", "ci", "--scope", "write", "--storage-root", str(root)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    secret = made.stdout.split()[0]
    assert "scope write" in made.stdout
    listed = subprocess.run([*run, "user", "token", "list", "alice", "--storage-root", str(root)], capture_output=True, text=True, check=True)
    assert "\twrite\tci" in listed.stdout
    client = await aiohttp_client(create_app(FilesystemBackend(root), hub_settings()))
    assert granted(await token(client, ("alice", secret), "repository:alice/app:pull,push,delete")) == ["pull", "push"]


async def test_settings_show_each_webhooks_recent_deliveries_with_their_outcome(aiohttp_client, aiohttp_server, disk):
    from tests.test_webhooks import delivered, hub, start_receiver

    client = await hub(aiohttp_client, disk)
    alice = await owner_and_repository(client)
    flaky = await start_receiver(aiohttp_server, statuses=[503])  # answers 503 once, then 200
    refusing = await start_receiver(aiohttp_server, statuses=[400])  # a client error is not retried
    for receiver in (flaky, refusing):
        made = await client.post("/api/v1/repositories/alice/app/-/webhooks", json={"url": receiver.url}, headers=basic(*alice))
        assert made.status == 201
    await push_as(client, alice, "alice/app", configured_image(), "v2")
    await delivered(client)

    await sign_in(client, *alice)
    settings = await page(client, "/r/alice/app/-/settings")
    hooks = settings[settings.index('id="webhooks"'):]
    first, second = hooks.split('<li class="card">')[1:3]
    assert flaky.url in first and '<span class="good">delivered</span>' in first and "HTTP 200" in first
    assert re.search(r'<td class="num">2</td>', first), "two attempts"
    assert refusing.url in second and '<span class="bad">failed</span>' in second and "HTTP 400" in second


async def test_a_repository_delete_cut_short_is_finished_by_deleting_again(aiohttp_client, disk):
    """A crash after the storage is gone but before the Hub forgot the repository leaves
    settings behind; the admin API's delete finishes the job instead of failing."""
    client = await hub_client(aiohttp_client, disk)
    alice = await owner_and_repository(client, "alice/app")
    await client.server.app[SERVICES].repositories.delete("alice/app")  # the storage half only
    assert (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).status == 200
    assert (await client.delete("/api/v1/repositories/alice/app", headers=basic(*alice))).status == 204
    assert (await client.get("/api/v1/repositories/alice/app", headers=basic(*alice))).status == 404


async def test_the_password_form_is_throttled_like_sign_in_and_takes_no_access_token(aiohttp_client, disk):
    client = await hub_client(aiohttp_client, disk, sign_in_failures=3)
    alice = await create_user(client, "alice", "alice-password")
    made = await (await client.post("/api/v1/users/alice/tokens", json={"name": "t"}, headers=basic(*alice))).json()
    await sign_in(client, *alice)
    with_token = await post(client, "/account/password", "/account", 400, current=made["token"], new="new-password", repeat="new-password")
    assert "current password is not right" in await with_token.text()
    for _ in range(3):  # the limit: three failures (an access token that proves itself is no failure)
        await post(client, "/account/password", "/account", 400, current="guess", new="new-password", repeat="new-password")
    refused = await post(client, "/account/password", "/account", 429, current="alice-password", new="new-password", repeat="new-password")
    assert "Too many wrong passwords" in await refused.text()
    users = client.server.app[SERVICES].hub.users
    assert await users.authenticate("alice", "alice-password") is not None, "the password is unchanged"
    assert await users.authenticate("alice", "new-password") is None
