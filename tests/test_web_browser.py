"""The web page in a real browser (Debian's chromium driven by Playwright) against a registry
process with auth enabled: an owner, an organization member and a stranger use each feature,
and every result is checked through the APIs; then axe-core scans every page, signed out and
in, at 1280 px and 390 px, light and dark, for serious or critical violations and horizontal
overflow on a phone.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ocispec import mediatypes
from tests.conftest import RegistryProcess, hub_env, start_registry, stop_process
from tests.hub import basic
from tests.oci import push_image
from tests.test_web import CHROMIUM_ARGS, configured_image, index_of

ROOT = ("root", "root-password-123")
AXE = Path(__file__).resolve().parent.parent / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1280, 390)
SCHEMES = ("light", "dark")
README = """## Usage

Run **webapp** with `--port 8080`.

<script>window.pwned = true</script>
[safe](https://example.com/docs) [evil](javascript:window.pwned=true) <a href="javascript:window.pwned=true">raw</a>
"""


@pytest.fixture
def registry(tmp_path: Path, chromium: str) -> Any:
    assert AXE.exists(), f"axe-core is missing at {AXE}: `make test` installs it with npm"
    process = start_registry(tmp_path / "data", env=hub_env(ROOT))
    yield process
    stop_process(process.process)


@pytest.fixture
def chromium() -> str:
    from tests.test_web import CHROMIUM

    assert Path(CHROMIUM).exists(), "Debian's chromium is required: `make test` installs it with apt-get"
    return CHROMIUM


# -- API helpers: the check behind every step -----------------------------------------------------
async def api(registry: RegistryProcess, method: str, path: str, who: tuple[str, str] = ROOT, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        async with http.request(method, path, headers=basic(*who), **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else await response.text()
            return response.status, body


async def pusher(registry: RegistryProcess, who: tuple[str, str], name: str) -> aiohttp.ClientSession:
    status, granted = await api(registry, "GET", "/token", who, params={"service": "dockyard", "scope": f"repository:{name}:pull,push,delete"})
    assert status == 200, granted
    return aiohttp.ClientSession(base_url=registry.url, headers={"Authorization": f"Bearer {granted['token']}"})


async def tags_of(registry: RegistryProcess, who: tuple[str, str], name: str) -> list[str]:
    async with await pusher(registry, who, name) as http:
        async with http.get(f"/v2/{name}/tags/list") as response:
            return (await response.json()).get("tags") or [] if response.status == 200 else []


async def create_user(registry: RegistryProcess, name: str) -> tuple[str, str]:
    status, body = await api(registry, "POST", "/api/v1/users", json={"name": name, "password": f"{name}-password"})
    assert status == 201, body
    return name, f"{name}-password"


# -- the browser ------------------------------------------------------------------------------
@asynccontextmanager
async def browser_page(chromium: str, profile: Path, registry: RegistryProcess) -> AsyncIterator[Any]:
    """A fresh browser profile (its own cookies); CSP is bypassed only so axe can be injected."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, args=CHROMIUM_ARGS, headless=True, viewport={"width": 1280, "height": 900},
            bypass_csp=True,
        )  # fmt: skip
        try:
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=registry.url)
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(10_000)
            yield page
        finally:
            await context.close()


async def sign_in(page: Any, registry: RegistryProcess, who: tuple[str, str]) -> None:
    from playwright.async_api import expect

    await page.goto(registry.url + "/login")
    await page.fill("#username", who[0])
    await page.fill("#password", who[1])
    await page.click("main button[type=submit]")
    await expect(page.locator(".who")).to_have_text(who[0])


async def test_owner_member_and_stranger_use_every_feature(chromium: str, registry: RegistryProcess, tmp_path: Path) -> None:
    from playwright.async_api import expect

    alice, bob, carol = [await create_user(registry, name) for name in ("alice", "bob", "carol")]
    async with browser_page(chromium, tmp_path / "alice", registry) as page:
        await sign_in(page, registry, alice)
        # an organization, made and staffed from the page
        await page.click("text=Account")
        await page.fill("#org-name", "acme")
        await page.click("text=Create organization")
        await expect(page.locator(".notice")).to_contain_text("organization was created")
        await page.fill("#member-name", "bob")
        await page.select_option("#member-role", "write")
        await page.click("text=Add member")
        assert (await api(registry, "GET", "/api/v1/orgs/acme", alice))[1]["members"] == {"alice": "admin", "bob": "write"}

        async with await pusher(registry, alice, "acme/app") as http:
            for tag in ("v1", "v2"):
                await push_image(http, "acme/app", configured_image(), tag)  # type: ignore[arg-type]

        # README with a preview, then saved; nothing in it runs
        await page.goto(registry.url + "/r/acme/app/-/settings")
        await page.fill("#description", "The web application")
        await page.fill("#full_description", README)
        await page.click("text=Preview README")
        await expect(page.locator(".preview .markdown h2")).to_have_text("Usage")
        assert (await api(registry, "GET", "/api/v1/repositories/acme/app", alice))[1]["full_description"] == ""
        await page.click("button[value=save]")
        await expect(page.locator(".markdown h2")).to_have_text("Usage")
        assert await page.locator(".markdown script").count() == 0
        assert await page.locator(".markdown a[href^='javascript']").count() == 0
        assert await page.evaluate("window.pwned") is None
        assert (await api(registry, "GET", "/api/v1/repositories/acme/app", alice))[1]["full_description"] == README

        # a webhook, added and removed
        await page.goto(registry.url + "/r/acme/app/-/settings")
        await page.fill("#webhook-url", "https://hooks.example.com/ci")
        await page.click("text=Add webhook")
        hooks = (await api(registry, "GET", "/api/v1/repositories/acme/app/-/webhooks", alice))[1]["webhooks"]
        assert [hook["url"] for hook in hooks] == ["https://hooks.example.com/ci"]
        await page.click("text=Remove")
        assert (await api(registry, "GET", "/api/v1/repositories/acme/app/-/webhooks", alice))[1]["webhooks"] == []

        # a read-only token: shown once, works for pulls, revoked from the page
        await page.goto(registry.url + "/account")
        await page.fill("#token-name", "ci")
        await page.check("input[name=scope][value=read]")
        await page.click("text=Create token")
        secret = (await page.locator("#new-token").inner_text()).strip()
        assert secret.startswith("dkp_")
        assert await tags_of(registry, ("alice", secret), "acme/app") == ["v1", "v2"]
        assert (await api(registry, "GET", "/api/v1/users/alice/tokens", ("alice", secret)))[0] == 403
        await page.goto(registry.url + "/account")
        assert await page.locator("#new-token").count() == 0, "the secret is shown only once"
        await page.click("button:has-text('Revoke')")
        await expect(page.locator(".notice")).to_contain_text("revoked")
        assert (await api(registry, "GET", "/api/v1/repositories/acme/app", ("alice", secret)))[0] == 401

    async with browser_page(chromium, tmp_path / "bob", registry) as page:
        await sign_in(page, registry, bob)
        await page.goto(registry.url + "/r/acme/app")
        await expect(page.locator(".markdown h2")).to_have_text("Usage")
        await page.click("button.star-button")
        await expect(page.locator("button.star-button")).to_have_attribute("aria-pressed", "true")
        assert (await api(registry, "GET", "/api/v1/repositories/acme/app", bob))[1]["star_count"] == 1
        await page.click("a[href='/r/acme/app/-/delete-tag/v1']")
        await page.click("button:has-text('Delete tag')")
        await expect(page.locator(".notice")).to_contain_text("tag was deleted")
        assert await tags_of(registry, bob, "acme/app") == ["v2"]
        await page.click("button.copy >> nth=0")
        await expect(page.locator("#announce")).to_have_text("Copied to the clipboard")
        assert await page.locator("a[href='/r/acme/app/-/settings']").count() == 0, "a writer gets no settings button"

    async with browser_page(chromium, tmp_path / "carol", registry) as page:
        await sign_in(page, registry, carol)
        response = await page.goto(registry.url + "/r/acme/app")
        assert response.status == 404
        await expect(page.locator("h1")).to_have_text("Not found")
        await page.goto(registry.url + "/u/acme")
        assert await page.locator("table.members").count() == 0
        response = await page.goto(registry.url + "/no/such/page")
        assert response.status == 404 and await page.title() == "Page not found · Dockyard"

    async with browser_page(chromium, tmp_path / "alice-again", registry) as page:
        await sign_in(page, registry, alice)
        await page.goto(registry.url + "/u/acme")
        await page.click("button:has-text('Remove bob')")
        await expect(page.locator(".notice")).to_contain_text("member was removed")
        assert await tags_of(registry, bob, "acme/app") == [], "a removed member loses access"
        await page.goto(registry.url + "/r/acme/app/-/settings")
        await page.click("text=Delete repository…")
        await page.fill("#confirm", "acme/app")
        await page.click("button:has-text('Delete repository')")
        await expect(page.locator(".notice")).to_contain_text("repository was deleted")
        assert (await api(registry, "GET", "/api/v1/repositories/acme/app", alice))[0] == 404


# -- accessibility and layout --------------------------------------------------------------------
async def violations(page: Any) -> list[str]:
    """Serious and critical axe-core findings on the page as it is now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        f"{item['id']} ({item['impact']}): {[node['target'] for node in item['nodes']][:3]}"
        for item in result
        if item["impact"] in ("serious", "critical")
    ]


CONTROL_CONTRAST = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const channel = (value) => { const c = value / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (element) => {
    for (let node = element.parentElement; node; node = node.parentElement) {
      const color = rgb(getComputedStyle(node).backgroundColor);
      if (color.length === 3 || color[3] > 0) return color.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const control of document.querySelectorAll("input:not([type=hidden]):not([type=radio]):not([type=checkbox]), textarea, select, button.copy, .button.secondary")) {
    const style = getComputedStyle(control);
    if (style.display === "none" || control.offsetParent === null || parseFloat(style.borderTopWidth) === 0) continue;
    const [a, b] = [luminance(rgb(style.borderTopColor)), luminance(background(control))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 3) found.push(`${control.tagName.toLowerCase()}#${control.id || control.className}: border ${ratio.toFixed(2)}:1`);
  }
  return found;
}"""
"""Borders of form controls against what is behind them: WCAG 1.4.11 asks >= 3:1 (axe does not check it)."""


async def check_every_view(page: Any, url: str) -> list[str]:
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(url)
    return await check_views_here(page, url)


async def check_views_here(page: Any, url: str) -> list[str]:
    """The page as it is now (after a form, say) at each width and colour scheme."""
    problems: list[str] = []
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        for scheme in SCHEMES:
            await page.emulate_media(color_scheme=scheme)
            problems += [f"{url} {width}px {scheme}: {finding}" for finding in await violations(page)]
            problems += [f"{url} {width}px {scheme}: {finding}" for finding in await page.evaluate(CONTROL_CONTRAST)]
            if width < 700:
                overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 0:
                    problems.append(f"{url} {width}px {scheme}: {overflow}px horizontal overflow")
    return problems


async def test_every_page_passes_axe_and_fits_a_phone(chromium: str, registry: RegistryProcess, tmp_path: Path) -> None:
    alice = await create_user(registry, "alice")
    assert (await api(registry, "POST", "/api/v1/orgs", alice, json={"name": "acme"}))[0] == 201
    assert (await api(registry, "PUT", "/api/v1/orgs/acme/members/root", alice, json={"role": "read"}))[0] == 200
    amd64, arm64 = configured_image(("linux", "amd64")), configured_image(("linux", "arm64"))
    async with await pusher(registry, alice, "alice/webapp-with-a-rather-long-repository-name") as http:
        long_name = "alice/webapp-with-a-rather-long-repository-name"
        for image in (amd64, arm64):
            await push_image(http, long_name, image)  # type: ignore[arg-type]
        index = index_of(amd64, arm64)
        async with http.put(f"/v2/{long_name}/manifests/latest", data=index.data, headers={"Content-Type": mediatypes.OCI_INDEX}) as put:
            assert put.status == 201
        await push_image(http, long_name, configured_image(), "1.0.0-release-candidate-with-long-tag")  # type: ignore[arg-type]
    async with await pusher(registry, alice, "acme/private") as http:
        await push_image(http, "acme/private", configured_image(), "v1")  # type: ignore[arg-type]
    readme = "# Webapp\n\nA *long* line: " + "word " * 80 + "\n\n```\n" + "x" * 300 + "\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    status, _ = await api(registry, "PATCH", f"/api/v1/repositories/{long_name}", alice,
                          json={"visibility": "public", "description": "Serves the web application", "full_description": readme})  # fmt: skip
    assert status == 200
    assert (await api(registry, "POST", f"/api/v1/repositories/{long_name}/-/webhooks", alice, json={"url": "https://hooks.example.com/x"}))[0] == 201
    async with await pusher(registry, alice, long_name) as http:  # a push the webhook tries to deliver (no such host here)
        await push_image(http, long_name, configured_image(), "with-hook")  # type: ignore[arg-type]
    child = f"/r/{long_name}/-/manifests/{arm64.digest}?index={index.digest}"
    public_pages = ["/", "/?sort=stars", "/search", "/search?q=webapp", "/search?q=zzz", f"/r/{long_name}", f"/r/{long_name}?tags=zzz",
                    f"/r/{long_name}/-/tags/latest", f"/r/{long_name}/-/tags/1.0.0-release-candidate-with-long-tag", child,
                    "/u/alice", "/u/acme", "/login", "/no/such/page", "/r/acme/private"]  # fmt: skip
    own_pages = ["/account", f"/r/{long_name}/-/settings", f"/r/{long_name}/-/delete", f"/r/{long_name}/-/delete-tag/latest",
                 "/r/acme/private", "/u/acme", "/r/acme/private/-/settings"]  # fmt: skip

    problems: list[str] = []
    async with browser_page(chromium, tmp_path / "anonymous", registry) as page:
        for path in public_pages:
            problems += await check_every_view(page, registry.url + path)
    async with browser_page(chromium, tmp_path / "alice", registry) as page:
        await sign_in(page, registry, alice)
        await page.goto(registry.url + "/account")
        await page.fill("#token-name", "laptop")
        await page.click("text=Create token")  # the page that shows a new token once
        problems += [f"/account (new token): {finding}" for finding in await violations(page)]
        for path in own_pages + public_pages[:3]:
            problems += await check_every_view(page, registry.url + path)
        settings = registry.url + f"/r/{long_name}/-/settings"
        deadline = time.monotonic() + 60  # the delivery is on record after its last retry, 7.5 s of backoff and more on a busy machine
        while True:  # until the failing delivery is on record, so its table is scanned too
            await page.goto(settings)
            if await page.locator("table.deliveries").count() or time.monotonic() > deadline:
                break
            await page.wait_for_timeout(200)
        assert await page.locator("table.deliveries").count() == 1
        problems += await check_views_here(page, settings + " (with a delivery)")
        await page.click("text=Preview README")
        problems += await check_views_here(page, settings + " (README preview)")
    assert not problems, "\n".join(problems)
