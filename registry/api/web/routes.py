"""Routes of the web page: thin handlers that find the visitor, call one view, render a template.

Pages: `/` (browse), `/search`, `/r/<name>` (tags), `/r/<name>/-/tags/<tag>` and
`/r/<name>/-/manifests/<digest>` (an image), `/r/<name>/-/settings` (GET and POST), and with
auth enabled `/login` (GET and POST) and `/logout` (POST). `-` is never a component of a
repository name, so `/-/` cannot be mistaken for part of one. Static files under `/static/`.

Every POST checks the CSRF token of the visitor's session before doing anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from aiohttp import web

from ...core.hub.tokens import TOKEN_PREFIX
from ...core.services import Services
from ..context import SERVICES, services
from ..http import MalformedForm, form_of
from ..signin import sign_in
from . import views
from .render import STATIC, render
from .session import Session, Sessions
from .views import InvalidInput, NotAllowed, NotVisible, Viewer

SESSIONS = web.AppKey("web_sessions", Sessions)
NAME = "{name:[a-z0-9][a-z0-9._/-]*?}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Page:
    """The visitor of one request and how to answer them."""

    request: web.Request
    services: Services
    viewer: Viewer
    session: Session | None
    sessions: Sessions | None

    @property
    def csrf(self) -> str:
        return self.sessions.csrf_token(self.session) if self.sessions and self.session else ""

    def csrf_ok(self, form: Any) -> bool:
        return self.sessions is not None and self.sessions.csrf_ok(self.session, str(form.get("csrf", "")))

    def render(self, template: str, status: int = 200, **values: Any) -> web.Response:
        context = {
            "viewer": self.viewer,
            "auth_enabled": self.viewer.auth_enabled,
            "csrf": self.csrf,
            "host": self.request.host,
            "path": self.request.path_qs,
            "query": "",
            **values,
        }
        return render(template, context, status)

    def error(self, status: int, title: str, message: str) -> web.Response:
        return self.render("error.html", status=status, title=title, message=message)


async def _token_exists(registry: Services, user: str, token_id: str) -> bool:
    return any(record.id == token_id for record in await registry.hub.tokens.of(user))


async def _visitor(request: web.Request) -> Page:
    registry = services(request)
    sessions = request.app.get(SESSIONS)
    if sessions is None:
        return Page(request, registry, Viewer(None, auth_enabled=False), None, None)
    session = sessions.read(request)
    user = None
    if session is not None and session.user:
        user = await registry.hub.users.get(session.user)
        if user is not None and session.password != sessions.fingerprint(user.password_hash):
            user = None
        if user is not None and session.token_id and not await _token_exists(registry, user.name, session.token_id):
            user = None
        if user is not None and await registry.hub.tokens.session_ended(session.nonce):
            user = None  # signed out: the cookie alone proves nothing any more
    return Page(request, registry, Viewer(user, auth_enabled=True), session, sessions)


def page(handler: Callable[[Page], Awaitable[web.StreamResponse]]) -> Handler:
    @wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        visit = await _visitor(request)
        try:
            return await handler(visit)
        except NotVisible:
            return visit.error(404, "Not found", "There is nothing here, or you may not see it. Signing in may help.")
        except NotAllowed as error:
            return visit.error(403, "Not allowed", str(error))
        except MalformedForm:
            return visit.error(400, "Bad request", "The form could not be read; reload the page and try again.")

    return handle


def _int(request: web.Request, key: str, default: int = 1) -> int:
    try:
        return max(1, int(request.query.get(key, default)))
    except ValueError:
        return default


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _safe_next(target: str) -> str:
    """Only paths on this site: never `//host`, `/\\host` or an absolute URL."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


# -- browsing --------------------------------------------------------------------------------
@page
async def home(visit: Page) -> web.Response:
    after = visit.request.query.get("after") or None
    if after is not None:
        try:
            after = views.parse_name(after)
        except NotVisible:
            after = None
    listing = await views.browse(visit.services, visit.viewer, after)
    return visit.render("home.html", title="Repositories", listing=listing)


@page
async def search(visit: Page) -> web.Response:
    query = visit.request.query.get("q", "")[:255]
    found = await views.search(visit.services, visit.viewer, query, _int(visit.request, "page"))
    return visit.render("search.html", title=f"Search: {query}" if query else "Search", found=found, query=query)


@page
async def repository(visit: Page) -> web.Response:
    view = await views.repository(visit.services, visit.viewer, visit.request.match_info["name"], _int(visit.request, "page"))
    return visit.render("repository.html", title=view.summary.name, repo=view)


@page
async def image_by_tag(visit: Page) -> web.Response:
    info = visit.request.match_info
    view = await views.image(visit.services, visit.viewer, info["name"], tag=info["tag"])
    return visit.render("image.html", title=f"{view.repository}{view.reference}", image=view)


@page
async def image_by_digest(visit: Page) -> web.Response:
    info = visit.request.match_info
    view = await views.image(visit.services, visit.viewer, info["name"], digest=info["digest"])
    return visit.render("image.html", title=f"{view.repository}{view.reference}", image=view)


# -- settings --------------------------------------------------------------------------------
@page
async def settings_form(visit: Page) -> web.Response:
    view = await views.repository_settings(visit.services, visit.viewer, visit.request.match_info["name"])
    return visit.render("settings.html", title=f"Settings of {view.name}", settings=view, error="")


@page
async def save_settings(visit: Page) -> web.StreamResponse:
    name = visit.request.match_info["name"]
    form = await form_of(visit.request)
    if not visit.csrf_ok(form):
        raise NotAllowed("This form has expired or was not sent from this site; reload the page and try again.")
    description, visibility = str(form.get("description", "")), str(form.get("visibility", ""))
    try:
        await views.update_settings(visit.services, visit.viewer, name, description, visibility)
    except InvalidInput as error:
        view = await views.repository_settings(visit.services, visit.viewer, name)
        return visit.render("settings.html", status=400, title=f"Settings of {view.name}", settings=view, error=str(error))
    return _see_other(f"/r/{views.parse_name(name)}")


# -- signing in and out ------------------------------------------------------------------------
@page
async def login_form(visit: Page) -> web.Response:
    assert visit.sessions is not None
    if visit.session is None:  # a session without a user, so the form carries a CSRF token
        visit.session = visit.sessions.new()
    response = visit.render("login.html", title="Sign in", next=_safe_next(visit.request.query.get("next", "/")), error="", username="")
    visit.sessions.write(visit.request, response, visit.session)
    return response


@page
async def login(visit: Page) -> web.StreamResponse:
    assert visit.sessions is not None
    form = await form_of(visit.request)
    username, secret = str(form.get("username", "")).strip(), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    user = None
    if not visit.csrf_ok(form):
        error = "The sign-in form expired; please try again."
    else:
        user = await sign_in(visit.request, username, secret)
        error = "" if user is not None else "Incorrect username, password or access token."
    if user is None:
        visit.session = visit.sessions.new()
        response = visit.render("login.html", title="Sign in", next=target, error=error, username=username)
        visit.sessions.write(visit.request, response, visit.session)
        return response
    token_id = secret.removeprefix(TOKEN_PREFIX).partition("_")[0] if secret.startswith(TOKEN_PREFIX) else None
    redirect = _see_other(target)
    visit.sessions.write(visit.request, redirect, visit.sessions.new(user.name, user.password_hash, token_id))
    return redirect


@page
async def logout(visit: Page) -> web.StreamResponse:
    assert visit.sessions is not None
    if not visit.csrf_ok(await form_of(visit.request)):
        raise NotAllowed("This form has expired or was not sent from this site; reload the page and try again.")
    redirect = _see_other("/")
    if visit.session is not None and visit.session.user:
        await visit.services.hub.tokens.end_session(visit.session.nonce, visit.session.expires)
    visit.sessions.clear(visit.request, redirect)
    return redirect


def add_web_routes(app: web.Application) -> None:
    """The web page's routes; sign-in exists only when the registry has auth enabled."""
    registry = app[SERVICES]
    if registry.signer is not None:
        app[SESSIONS] = Sessions.for_signer(registry.signer)
    route = app.router.add_route
    route("GET", "/", home)
    route("GET", "/search", search)
    route("GET", f"/r/{NAME}/-/tags/{{tag}}", image_by_tag)
    route("GET", f"/r/{NAME}/-/manifests/{{digest}}", image_by_digest)
    route("GET", f"/r/{NAME}/-/settings", settings_form)
    route("POST", f"/r/{NAME}/-/settings", save_settings)
    route("GET", f"/r/{NAME}", repository)
    if registry.signer is not None:
        route("GET", "/login", login_form)
        route("POST", "/login", login)
        route("POST", "/logout", logout)
    app.router.add_static("/static", STATIC)

