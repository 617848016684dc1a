"""The Docker token endpoint: GET (Basic or anonymous) and the OAuth2 POST form.

Grants the intersection of the requested and the permitted actions; a partial grant is still
a 200 with fewer actions, as the token spec says.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from aiohttp import web

from ocispec.names import InvalidName, validate_repository

from ..core.hub.models import User
from ..core.hub.permissions import repository_actions
from ..core.hub.scopes import Scope
from .context import services
from .http import MalformedForm, form_of
from .signin import sign_in


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _unauthorized(description: str) -> web.Response:
    body = {"errors": [{"code": "UNAUTHORIZED", "message": description}], "error": "invalid_grant"}
    return web.json_response(body, status=401, headers={"WWW-Authenticate": 'Basic realm="dockyard"'})


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    return username, password


async def _grant(request: web.Request, user: User | None, requested: list[str]) -> list[Scope]:
    hub = services(request).hub
    granted: list[Scope] = []
    for text in requested:
        try:
            scope = Scope.parse(text)
        except ValueError:
            continue
        if scope.type == "repository":
            try:
                validate_repository(scope.name)
            except InvalidName:
                continue
            allowed = await repository_actions(hub, user, scope.name)
            if "admin" in allowed:
                allowed = allowed | {"*"}
            actions = scope.actions & allowed
        elif scope.type == "registry" and scope.name == "catalog":
            actions = scope.actions & {"*"}
        else:
            actions = frozenset()
        granted.append(Scope(scope.type, scope.name, actions))
    return granted


async def _token_response(request: web.Request, user: User | None, scopes: list[str], offline: bool, secret: str = "") -> web.Response:
    registry = services(request)
    assert registry.signer is not None
    granted = await _grant(request, user, scopes)
    token, ttl = registry.signer.issue(user.name if user else "", granted)
    body = {
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if offline and user is not None and secret:
        body["refresh_token"] = await registry.hub.tokens.create_refresh(user, secret)
    return web.json_response(body)


def _check_service(request: web.Request, service: str | None) -> web.Response | None:
    expected = services(request).signer.service  # type: ignore[union-attr]
    if service and service != expected:
        return _oauth_error(400, "invalid_request", f"unknown service {service!r}; this is {expected!r}")
    return None


async def get_token(request: web.Request) -> web.Response:
    if (problem := _check_service(request, request.query.get("service"))) is not None:
        return problem
    user: User | None = None
    credentials = _basic_credentials(request)
    if credentials is not None:
        user = await sign_in(request, *credentials)
        if user is None:
            return _unauthorized("incorrect username or password")
    offline = request.query.get("offline_token", "").lower() == "true"
    # a scope parameter may hold several scopes separated by spaces, as a challenge's does
    requested = [scope for text in request.query.getall("scope", []) for scope in text.split()]
    return await _token_response(request, user, requested, offline, credentials[1] if credentials else "")


async def post_token(request: web.Request) -> web.Response:
    try:
        form = await form_of(request)
    except MalformedForm as error:
        return _oauth_error(400, "invalid_request", str(error))
    if (problem := _check_service(request, str(form.get("service") or ""))) is not None:
        return problem
    hub = services(request).hub
    grant_type = form.get("grant_type")
    secret = ""
    if grant_type == "password":
        secret = str(form.get("password", ""))
        user = await sign_in(request, str(form.get("username", "")), str(form.get("password", "")))
        if user is None:
            return _unauthorized("incorrect username or password")
    elif grant_type == "refresh_token":
        user = await hub.tokens.refresh_user(str(form.get("refresh_token", "")))
        if user is None:
            return _unauthorized("refresh token is invalid or revoked")
    else:
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be password or refresh_token")
    scopes = str(form.get("scope", "")).split()
    offline = form.get("access_type") == "offline"
    return await _token_response(request, user, scopes, offline, secret)
