"""The visitor's own account and organizations, and the page of each namespace.

`/account`: personal access tokens (create with a name and a scope, the secret shown once; list
with last use; revoke), the password, "sign out everywhere", and the visitor's organizations
(create one). `/u/<name>`: the repositories of a user or organization the visitor may see; for
an organization's members its members and roles, which its admins change there.

What may be done is what the admin API allows: only the user themself (signed in with a
password or an admin-scoped token) manages their account; only an organization's admins (or a
site admin) manage its members.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, get_args

from aiohttp import web

from ...core.hub.errors import HubError
from ...core.hub.models import Organization, Role, TokenScope, User
from ..signin import TooManySignIns, sign_in
from . import views
from .views import NotAllowed, NotVisible
from .visit import Page, done, integer, page, see_other

TOKEN_SCOPES: dict[str, str] = {
    "read": "Read-only: pull",
    "write": "Read & write: pull and push",
    "delete": "Read, write & delete: pull, push and delete tags and manifests",
    "admin": "Admin: everything you may do, account and settings included",
}
ROLES: dict[str, str] = {"read": "Read: pull", "write": "Write: pull, push, delete", "admin": "Admin: and settings, members"}
MIN_PASSWORD = 8


# -- the account -------------------------------------------------------------------------------
def _account_user(visit: Page) -> User:
    visit.require_user()
    user = visit.viewer.user
    assert user is not None
    if not user.manages_account:
        raise NotAllowed(f"You signed in with an access token of scope “{user.token_scope}”, which cannot manage the account.")
    return user


async def _account_page(visit: Page, *, status: int = 200, **values: Any) -> web.Response:
    user = _account_user(visit)
    registry = visit.services
    tokens = await registry.hub.tokens.of(user.name)
    organizations = sorted(await registry.hub.organizations.of_member(user.name))
    context: dict[str, Any] = {"token_name": "", "token_scope": "read", "new_token": None, "error": "", "section": "", "org_name": ""}
    context.update(values)
    return visit.render(
        "account.html", status=status, title="Your account", tokens=tokens, organizations=organizations, scopes=TOKEN_SCOPES,
        now=time.time(), **context,
    )  # fmt: skip


@page
async def account(visit: Page) -> web.Response:
    return await _account_page(visit)


@page
async def create_token(visit: Page) -> web.Response:
    user = _account_user(visit)
    name, scope = visit.field("name").strip(), visit.field("scope")
    if scope not in get_args(TokenScope):
        return await _account_page(visit, status=400, section="tokens", error="Choose one of the scopes listed.", token_name=name)
    if not 1 <= len(name) <= 100:
        return await _account_page(visit, status=400, section="tokens", error="Give the token a name of 1 to 100 characters.", token_scope=scope)
    record, secret = await visit.services.hub.tokens.create(user.name, name, scope)  # type: ignore[arg-type]
    return await _account_page(visit, new_token={"name": record.name, "scope": record.scope, "secret": secret})


@page
async def revoke_token(visit: Page) -> web.StreamResponse:
    user = _account_user(visit)
    try:
        await visit.services.hub.tokens.revoke(user.name, visit.request.match_info["token_id"])
    except HubError:
        raise NotVisible("token") from None
    return done("/account", "token-revoked")


def _keep_signed_in(visit: Page, response: web.Response, user: User) -> web.Response:
    """`response`, carrying a fresh session for this browser after a change that ended every session."""
    assert visit.sessions is not None and visit.session is not None
    visit.sessions.write(visit.request, response, visit.sessions.new(user.name, user.password_hash, visit.session.token_id))
    return response


@page
async def change_password(visit: Page) -> web.StreamResponse:
    user = _account_user(visit)
    current, new, repeated = visit.field("current"), visit.field("new"), visit.field("repeat")
    error = ""
    try:  # through the sign-in throttle: a stolen session must not become a password oracle
        proven = await sign_in(visit.request, user.name, current)
    except TooManySignIns as refused:
        retry = refused.headers.get("Retry-After", "")
        return await _account_page(visit, status=429, section="password", error=f"Too many wrong passwords; try again in {retry} seconds.")
    if proven is None or proven.token_scope is not None:  # the password itself, not an access token
        error = "The current password is not right."
    elif len(new) < MIN_PASSWORD:
        error = f"The new password needs at least {MIN_PASSWORD} characters."
    elif new != repeated:
        error = "The two new passwords differ."
    if error:
        return await _account_page(visit, status=400, section="password", error=error)
    await visit.services.hub.users.set_password(user.name, new)
    changed = await visit.services.hub.users.require(user.name)
    return _keep_signed_in(visit, done("/account", "password-changed"), changed)


@page
async def sign_out_everywhere(visit: Page) -> web.StreamResponse:
    user = _account_user(visit)
    await visit.services.hub.users.end_sessions(user.name)
    return _keep_signed_in(visit, done("/account", "signed-out-everywhere"), user)


@page
async def create_organization(visit: Page) -> web.StreamResponse:
    user = _account_user(visit)
    name = visit.field("name").strip()
    try:
        await visit.services.hub.organizations.create(name, user.name)
    except HubError as error:
        return await _account_page(visit, status=400, section="organizations", error=str(error), org_name=name)
    return done(f"/u/{name}", "organization-created")


# -- namespaces and organization members ---------------------------------------------------------
@dataclass(frozen=True)
class NamespaceView:
    name: str
    kind: str
    """"user", "organization", or "namespace" (repositories under a name no account holds)."""
    found: views.Listing
    organization: Organization | None
    """The organization with its members, shown to its members and site admins; else None."""
    can_manage: bool


async def _namespace_view(visit: Page, name: str, page_number: int) -> NamespaceView:
    registry, viewer = visit.services, visit.viewer
    found = await views.listing(registry, viewer, "", page=page_number, sort="name", namespace=name)
    org = await registry.hub.organizations.get(name) if viewer.auth_enabled else None
    user = await registry.hub.users.get(name) if viewer.auth_enabled and org is None else None
    if org is None and user is None and found.total == 0:
        raise NotVisible(name)
    me = viewer.user
    sees_members = org is not None and me is not None and (me.admin or me.name in org.members)
    can_manage = org is not None and me is not None and me.manages_account and (me.admin or org.members.get(me.name) == "admin")
    kind = "organization" if org else "user" if user else "namespace"
    return NamespaceView(name, kind, found, org if sees_members else None, can_manage)


@page
async def namespace(visit: Page) -> web.Response:
    name = visit.request.match_info["namespace"]
    if not views.is_namespace(name):
        raise NotVisible(name)
    view = await _namespace_view(visit, name, integer(visit.request, "page"))
    return visit.render("namespace.html", title=name, space=view, roles=ROLES, error="", member_name="")


async def _managed_organization(visit: Page) -> str:
    visit.require_user()
    name = visit.request.match_info["namespace"]
    org = await visit.services.hub.organizations.get(name) if views.is_namespace(name) else None
    me = visit.viewer.user
    assert me is not None
    if org is None or not (me.admin or me.name in org.members):
        raise NotVisible(name)
    if not me.manages_account or not (me.admin or org.members.get(me.name) == "admin"):
        raise NotAllowed(f"only admins of {name} manage its members")
    return org.name


async def _member_change(visit: Page, org: str, member: str, role: Role | None) -> web.StreamResponse:
    try:
        await visit.services.hub.organizations.set_member(org, member, role)
    except HubError as error:
        view = await _namespace_view(visit, org, 1)
        return visit.render("namespace.html", status=400, title=org, space=view, roles=ROLES, error=str(error), member_name=member)
    return done(f"/u/{org}", "member-saved" if role else "member-removed")


@page
async def set_member(visit: Page) -> web.StreamResponse:
    org = await _managed_organization(visit)
    role = visit.field("role")
    if role not in ROLES:
        view = await _namespace_view(visit, org, 1)
        return visit.render("namespace.html", status=400, title=org, space=view, roles=ROLES, error="Choose a role.", member_name=visit.field("user"))
    return await _member_change(visit, org, visit.field("user").strip(), role)  # type: ignore[arg-type]


@page
async def remove_member(visit: Page) -> web.StreamResponse:
    org = await _managed_organization(visit)
    return await _member_change(visit, org, visit.request.match_info["user"], None)


@page
async def organizations_redirect(visit: Page) -> web.StreamResponse:
    visit.require_user()
    return see_other("/account#organizations")


def add_routes(app: web.Application) -> None:
    route = app.router.add_route
    route("GET", "/account", account)
    route("POST", "/account/tokens", create_token)
    route("POST", "/account/tokens/{token_id:[0-9a-f]{1,64}}/revoke", revoke_token)
    route("POST", "/account/password", change_password)
    route("POST", "/account/sessions/end", sign_out_everywhere)
    route("GET", "/orgs", organizations_redirect)
    route("POST", "/orgs", create_organization)
    route("POST", "/u/{namespace}/-/members", set_member)
    route("POST", "/u/{namespace}/-/members/{user}/remove", remove_member)
