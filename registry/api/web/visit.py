"""One visit to the web page: who the visitor is, and the ways a handler answers them.

`page` wraps every handler: it finds the visitor from the session cookie (checking that the
password, the access token it names and "sign out everywhere" still allow the session), turns
the views' refusals into styled error pages, and makes every POST prove its CSRF token first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ...core.services import Services
from ..context import services
from ..http import MalformedForm, form_of
from .render import render
from .session import Session, Sessions
from .views import NotAllowed, NotVisible, Viewer

SESSIONS = web.AppKey("web_sessions", Sessions)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXPIRED_FORM = "This form has expired or was not sent from this site; reload the page and try again."
NOTICES = {
    "saved": "Settings saved.",
    "tag-deleted": "The tag was deleted. Its layers stay stored until garbage collection finds nothing else uses them.",
    "repository-deleted": "The repository was deleted. Its layers stay stored until garbage collection finds nothing else uses them.",
    "token-revoked": "The access token was revoked; it no longer signs in anywhere.",
    "password-changed": "Your password was changed; other sessions have ended.",
    "signed-out-everywhere": "Every other session has ended, in browsers and in clients holding refresh tokens.",
    "webhook-added": "The webhook was added.",
    "webhook-removed": "The webhook was removed.",
    "member-saved": "The membership was saved.",
    "member-removed": "The member was removed.",
    "organization-created": "The organization was created; you are its admin.",
}
"""What a page says after a change (`?done=<key>`): fixed texts, so a link cannot put words on the page."""


class SignInRequired(Exception):
    """The page needs a signed-in visitor: send them to sign in and back."""


@dataclass
class Page:
    """The visitor of one request and how to answer them."""

    request: web.Request
    services: Services
    viewer: Viewer
    session: Session | None
    sessions: Sessions | None
    form: Any = None
    """The POSTed form, read (and its CSRF token checked) by `page` before the handler runs."""

    @property
    def csrf(self) -> str:
        return self.sessions.csrf_token(self.session) if self.sessions and self.session else ""

    def csrf_ok(self, form: Any) -> bool:
        return self.sessions is not None and self.sessions.csrf_ok(self.session, str(form.get("csrf", "")))

    def field(self, key: str) -> str:
        return str(self.form.get(key, "")) if self.form is not None else ""

    def render(self, template: str, status: int = 200, **values: Any) -> web.Response:
        context = {
            "viewer": self.viewer,
            "auth_enabled": self.viewer.auth_enabled,
            "csrf": self.csrf,
            "host": self.request.host,
            "path": self.request.path_qs,
            "query": "",
            "notice": NOTICES.get(self.request.query.get("done", ""), ""),
            **values,
        }
        return render(template, context, status)

    def error(self, status: int, title: str, message: str) -> web.Response:
        return self.render("error.html", status=status, title=title, message=message)

    def require_user(self) -> str:
        if self.viewer.user is None:
            raise SignInRequired()
        return self.viewer.user.name


async def visitor(request: web.Request) -> Page:
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
        if user is not None and user.sessions_after is not None and session.issued < user.sessions_after:
            user = None  # signed out everywhere since
        if user is not None and session.token_id:
            token = await registry.hub.tokens.get(user.name, session.token_id)
            user = user.model_copy(update={"token_scope": token.scope}) if token is not None else None
        if user is not None and await registry.hub.tokens.session_ended(session.nonce):
            user = None  # signed out: the cookie alone proves nothing any more
    return Page(request, registry, Viewer(user, auth_enabled=True), session, sessions)


def sign_in_location(request: web.Request) -> str:
    return "/login?next=" + quote(request.path_qs, safe="")


def page(handler: Callable[[Page], Awaitable[web.StreamResponse]]) -> Handler:
    @wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        visit = await visitor(request)
        try:
            if request.method == "POST":
                visit.form = await form_of(request)
                if not visit.csrf_ok(visit.form):
                    raise NotAllowed(EXPIRED_FORM)
            return await handler(visit)
        except SignInRequired:
            if visit.viewer.auth_enabled and request.method == "GET":
                return see_other(sign_in_location(request))
            if visit.viewer.auth_enabled:
                return visit.error(401, "Sign in first", "Your session has ended; sign in and try again.")
            return visit.error(403, "Not available", "Sign-in is disabled on this registry, so nothing can be managed here.")
        except NotVisible:
            if visit.viewer.auth_enabled and visit.viewer.user is None and request.method == "GET":
                return visit.error(404, "Not found", "There is nothing here, or you may not see it. Signing in may help.")
            return visit.error(404, "Not found", "There is nothing here, or you may not see it.")
        except NotAllowed as error:
            return visit.error(403, "Not allowed", str(error))
        except MalformedForm:
            return visit.error(400, "Bad request", "The form could not be read; reload the page and try again.")

    return handle


async def error_page(request: web.Request, status: int) -> web.Response:
    """The styled page for a browser that asked for a path nothing serves (404), or used a
    method the path does not take (405)."""
    visit = await visitor(request)
    if status == 405:
        return visit.error(405, "Not here", f"{request.path} does not answer a {request.method}; it is the address of a form.")
    return visit.error(404, "Page not found", f"Nothing is served at {request.path}.")


def wants_html(request: web.Request) -> bool:
    """A browser's request, by its Accept header (API clients never ask for text/html)."""
    return "text/html" in request.headers.get("Accept", "")


def integer(request: web.Request, key: str, default: int = 1) -> int:
    try:
        return max(1, min(int(request.query.get(key, default)), 1_000_000))
    except ValueError:
        return default


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def done(location: str, notice: str) -> web.Response:
    """Back to a page after a change, which says what happened (a key of `NOTICES`)."""
    assert notice in NOTICES, notice
    separator = "&" if "?" in location else "?"
    return see_other(f"{location}{separator}done={notice}")


def safe_next(target: str) -> str:
    """Only paths on this site: never `//host`, `/\\host` or an absolute URL."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target
