"""Managing one repository from the web page: settings and README (with a preview), webhooks,
stars, and deleting tags or the whole repository (each behind a confirmation page).

Each change goes through the same Hub and registry calls as the admin API and the distribution
API, with the same permission rules: admin for settings, webhooks and deleting the repository,
delete for deleting a tag, any signed-in visitor who may pull for a star. A visitor without the
right never sees the button, and a hand-made POST gets a 403.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web
from markupsafe import Markup

from ocispec.names import InvalidTag, validate_tag

from ...core.errors import RegistryError
from ...core.events import Actor
from ...core.hub.errors import HubError
from ...core.manifests import Reference
from . import views
from .markdown import render_markdown
from .views import InvalidInput, NotAllowed, NotVisible
from .visit import Page, done, page, see_other


def _settings_page(
    visit: Page, view: views.SettingsView, *, status: int = 200, error: str = "", preview: Markup | None = None, webhook_url: str = ""
) -> web.Response:
    return visit.render(
        "settings.html", status=status, title=f"Settings of {view.name}", settings=view, error=error, preview=preview, webhook_url=webhook_url
    )


@page
async def settings_form(visit: Page) -> web.Response:
    if visit.viewer.auth_enabled:
        visit.require_user()
    view = await views.repository_settings(visit.services, visit.viewer, visit.request.match_info["name"])
    return _settings_page(visit, view)


@page
async def save_settings(visit: Page) -> web.StreamResponse:
    name = visit.request.match_info["name"]
    visit.require_user()
    sent = {key: str(visit.form[key]) if key in visit.form else None for key in ("description", "full_description")}
    description, full_description, visibility = sent["description"], sent["full_description"], visit.field("visibility")
    view = await views.repository_settings(visit.services, visit.viewer, name)
    edited = dataclasses.replace(
        view,
        description=view.description if description is None else description,
        full_description=view.full_description if full_description is None else full_description,
        visibility=visibility if visibility in ("public", "private") else view.visibility,
    )
    if visit.field("action") == "preview":
        return _settings_page(visit, edited, preview=render_markdown(edited.full_description))
    try:
        await views.update_settings(visit.services, visit.viewer, name, description, full_description, visibility)
    except InvalidInput as error:
        return _settings_page(visit, edited, status=400, error=str(error))
    return done(f"/r/{view.name}", "saved")


@page
async def star(visit: Page) -> web.StreamResponse:
    user = visit.require_user()
    name, _ = await views.visible_repository(visit.services, visit.viewer, visit.request.match_info["name"])
    await visit.services.hub.repositories.ensure(name)
    await visit.services.hub.repositories.star(name, user, visit.field("star") == "on")
    return see_other(f"/r/{name}")


# -- webhooks ----------------------------------------------------------------------------------
@page
async def add_webhook(visit: Page) -> web.StreamResponse:
    visit.require_user()
    name = await views.admin_of(visit.services, visit.viewer, visit.request.match_info["name"])
    events = [kind for kind in ("push", "delete") if visit.field(f"event_{kind}") == "on"]
    secret = visit.field("secret") or None
    try:
        await visit.services.webhooks.store.add(name, visit.field("url").strip(), events, secret)  # type: ignore[arg-type]
    except HubError as error:
        view = await views.repository_settings(visit.services, visit.viewer, name)
        return _settings_page(visit, view, status=400, error=f"The webhook was not added: {error}", webhook_url=visit.field("url"))
    return done(f"/r/{name}/-/settings#webhooks", "webhook-added")


@page
async def remove_webhook(visit: Page) -> web.StreamResponse:
    visit.require_user()
    name = await views.admin_of(visit.services, visit.viewer, visit.request.match_info["name"])
    webhook_id = visit.request.match_info["webhook_id"]
    try:
        await visit.services.webhooks.store.remove(name, webhook_id)
    except HubError:
        raise NotVisible(webhook_id) from None
    return done(f"/r/{name}/-/settings#webhooks", "webhook-removed")


# -- deleting ----------------------------------------------------------------------------------
async def _deletable_tag(visit: Page) -> tuple[str, str]:
    """The repository and tag of a tag the visitor may delete."""
    visit.require_user()
    name, actions = await views.visible_repository(visit.services, visit.viewer, visit.request.match_info["name"])
    tag = visit.request.match_info["tag"]
    try:
        validate_tag(tag)
    except InvalidTag:
        raise NotVisible(tag) from None
    if "delete" not in actions:
        raise NotAllowed(f"deleting tags of {name} needs the write or admin role")
    if await visit.services.repositories.tag_pushed(name, tag) is None:
        raise NotVisible(f"{name}:{tag}")
    return name, tag


@page
async def confirm_tag_delete(visit: Page) -> web.Response:
    name, tag = await _deletable_tag(visit)
    return visit.render("delete.html", title=f"Delete {name}:{tag}", name=name, tag=tag, action=f"/r/{name}/-/delete-tag/{tag}")


@page
async def delete_tag(visit: Page) -> web.StreamResponse:
    name, tag = await _deletable_tag(visit)
    actor = Actor(visit.viewer.name, visit.request.host)
    try:
        await visit.services.manifests.delete(name, Reference(tag=tag), actor=actor)
    except RegistryError:
        raise NotVisible(f"{name}:{tag}") from None  # deleted meanwhile
    return done(f"/r/{name}", "tag-deleted")


async def _deletable_repository(visit: Page) -> str:
    visit.require_user()
    name, actions = await views.visible_repository(visit.services, visit.viewer, visit.request.match_info["name"])
    if "admin" not in actions:
        raise NotAllowed(f"only administrators of {name} delete it")
    return name


@page
async def confirm_repository_delete(visit: Page) -> web.Response:
    name = await _deletable_repository(visit)
    return visit.render("delete.html", title=f"Delete {name}", name=name, tag=None, action=f"/r/{name}/-/delete")


@page
async def delete_repository(visit: Page) -> web.StreamResponse:
    name = await _deletable_repository(visit)
    if visit.field("confirm") != name:
        return visit.render(
            "delete.html", status=400, title=f"Delete {name}", name=name, tag=None, action=f"/r/{name}/-/delete",
            error="Type the repository's full name to confirm.",
        )  # fmt: skip
    try:
        await visit.services.delete_repository(name)
    except RegistryError:
        raise NotVisible(name) from None
    return done("/", "repository-deleted")


def add_routes(app: web.Application, name: str) -> None:
    """Registered before `/r/<name>`, whose pattern would take these paths for repository names."""
    route = app.router.add_route
    route("GET", f"/r/{name}/-/settings", settings_form)
    route("POST", f"/r/{name}/-/settings", save_settings)
    route("POST", f"/r/{name}/-/star", star)
    route("POST", f"/r/{name}/-/webhooks", add_webhook)
    route("POST", f"/r/{name}/-/webhooks/{{webhook_id:[0-9a-f]{{1,64}}}}/remove", remove_webhook)
    route("GET", f"/r/{name}/-/delete-tag/{{tag}}", confirm_tag_delete)
    route("POST", f"/r/{name}/-/delete-tag/{{tag}}", delete_tag)
    route("GET", f"/r/{name}/-/delete", confirm_repository_delete)
    route("POST", f"/r/{name}/-/delete", delete_repository)
