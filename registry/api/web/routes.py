"""Routes of the web page: thin handlers that find the visitor, call one view, render a template.

Browsing: `/` (every repository the visitor may see), `/search`, `/u/<namespace>`,
`/r/<name>` (README and tags), `/r/<name>/-/tags/<tag>` and `/r/<name>/-/manifests/<digest>`
(an image). Managing a repository (`repository_pages`): `/r/<name>/-/settings`, `-/star`,
`-/webhooks`, `-/delete-tag/<tag>`, `-/delete`. The visitor's own account and organizations
(`account_pages`): `/account`, `/orgs`, `/u/<org>/-/members`. With auth enabled, `/login`
and `/logout`. `-` is never a component of a repository name, so `/-/` cannot be mistaken for
part of one. Static files under `/static/`.

Every POST checks the CSRF token of the visitor's session before doing anything (`visit.page`).
"""

from __future__ import annotations

from aiohttp import web

from ...core.hub.tokens import TOKEN_PREFIX
from ..context import SERVICES
from ..http import MalformedForm, form_of
from ..signin import sign_in
from . import account_pages, repository_pages, views
from .render import STATIC
from .session import Sessions
from .views import TagSort
from .visit import SESSIONS, Page, integer, page, safe_next, see_other, visitor

NAME = "{name:[a-z0-9][a-z0-9._/-]*?}"
STATIC_FILES = {path.name: path for path in STATIC.iterdir() if path.is_file()}
"""The stylesheet and the script, by name: nothing else under /static/ is ever served."""


async def static_file(request: web.Request) -> web.StreamResponse:
    path = STATIC_FILES.get(request.match_info["file"])
    if path is None:
        raise web.HTTPNotFound()  # a browser gets the styled page (`app._unknown_paths`)
    return web.FileResponse(path)


# -- browsing --------------------------------------------------------------------------------
@page
async def home(visit: Page) -> web.Response:
    query = visit.request.query
    found = await views.listing(
        visit.services, visit.viewer, "", page=integer(visit.request, "page"), sort=views.parse_sort(query.get("sort", ""), "name")
    )
    return visit.render("home.html", title="Repositories", found=found)


@page
async def search(visit: Page) -> web.Response:
    query = visit.request.query.get("q", "").strip()[:255]
    if not query:
        return visit.render("search.html", title="Search", found=None, query="")
    sort = views.parse_sort(visit.request.query.get("sort", ""), "relevance")
    found = await views.listing(visit.services, visit.viewer, query, page=integer(visit.request, "page"), sort=sort)
    return visit.render("search.html", title=f"Search: {query}", found=found, query=query)


@page
async def repository(visit: Page) -> web.Response:
    query = visit.request.query
    tag_sort: TagSort = "name" if query.get("sort") == "name" else "pushed"
    view = await views.repository(
        visit.services, visit.viewer, visit.request.match_info["name"], integer(visit.request, "page"), query.get("tags", ""), tag_sort
    )
    return visit.render("repository.html", title=view.summary.name, repo=view)


@page
async def image_by_tag(visit: Page) -> web.Response:
    info = visit.request.match_info
    view = await views.image(visit.services, visit.viewer, info["name"], tag=info["tag"])
    return visit.render("image.html", title=f"{view.repository}{view.reference}", image=view)


@page
async def image_by_digest(visit: Page) -> web.Response:
    info = visit.request.match_info
    index = visit.request.query.get("index") or None
    view = await views.image(visit.services, visit.viewer, info["name"], digest=info["digest"], index=index)
    return visit.render("image.html", title=f"{view.repository}{view.reference}", image=view)


# -- signing in and out ------------------------------------------------------------------------
@page
async def login_form(visit: Page) -> web.Response:
    assert visit.sessions is not None
    if visit.session is None:  # a session without a user, so the form carries a CSRF token
        visit.session = visit.sessions.new()
    response = visit.render("login.html", title="Sign in", next=safe_next(visit.request.query.get("next", "/")), error="", username="")
    visit.sessions.write(visit.request, response, visit.session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Not wrapped by `page`: an expired form is answered with the form again, not a 403."""
    visit = await visitor(request)
    assert visit.sessions is not None
    try:
        form = await form_of(request)
    except MalformedForm:
        return visit.error(400, "Bad request", "The form could not be read; reload the page and try again.")
    username, secret = str(form.get("username", "")).strip(), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    user = None
    if not visit.csrf_ok(form):
        error = "The sign-in form expired; please try again."
    else:
        user = await sign_in(request, username, secret)
        error = "" if user is not None else "Incorrect username, password or access token."
    if user is None:
        visit.session = visit.sessions.new()
        response = visit.render("login.html", title="Sign in", next=target, error=error, username=username)
        visit.sessions.write(request, response, visit.session)
        return response
    token_id = secret.removeprefix(TOKEN_PREFIX).partition("_")[0] if secret.startswith(TOKEN_PREFIX) else None
    redirect = see_other(target)
    visit.sessions.write(request, redirect, visit.sessions.new(user.name, user.password_hash, token_id))
    return redirect


@page
async def logout(visit: Page) -> web.StreamResponse:
    assert visit.sessions is not None
    redirect = see_other("/")
    if visit.session is not None and visit.session.user:
        await visit.services.hub.tokens.end_session(visit.session.nonce, visit.session.expires)
    visit.sessions.clear(visit.request, redirect)
    return redirect


def add_web_routes(app: web.Application) -> None:
    """The web page's routes; sign-in and every change exist only when the registry has auth enabled."""
    registry = app[SERVICES]
    if registry.signer is not None:
        app[SESSIONS] = Sessions.for_signer(registry.signer)
    route = app.router.add_route
    route("GET", "/", home)
    route("GET", "/search", search)
    route("GET", "/u/{namespace}", account_pages.namespace)
    route("GET", f"/r/{NAME}/-/tags/{{tag}}", image_by_tag)
    route("GET", f"/r/{NAME}/-/manifests/{{digest}}", image_by_digest)
    repository_pages.add_routes(app, NAME)
    route("GET", f"/r/{NAME}", repository)
    if registry.signer is not None:
        route("GET", "/login", login_form)
        route("POST", "/login", login)
        route("POST", "/logout", logout)
        account_pages.add_routes(app)
    route("GET", "/static/{file}", static_file)
