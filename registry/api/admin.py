"""The Hub's JSON admin API under /api/v1, authenticated with Basic (password or access token).

Site admins manage everything; users manage themselves, organizations they administer, and
repositories of namespaces where they hold the admin role.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from ocispec.names import InvalidName, validate_repository
from storage_backends import StorageFull

from ..core.hub.errors import Conflict, HubError, NotFound
from ..core.hub.models import RepositorySettings, Role, TokenScope, User, Visibility, Webhook, validate_account_name
from ..core.hub.permissions import repository_actions
from ..core.hub.webhooks import EventKind
from .context import services
from .signin import sign_in

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CALLER = "dockyard.caller"


class Forbidden(HubError):
    """The caller is known but may not do this."""


STATUS: dict[type[HubError], int] = {NotFound: 404, Conflict: 409, Forbidden: 403}


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin API's dialect, `{"error": "<message>"}`: Hub refusals by kind, request bodies
    that fail their model as 400. Anything else is a bug and stays a 500."""
    try:
        return await handler(request)
    except HubError as error:
        return _problem(next((STATUS[kind] for kind in type(error).__mro__ if kind in STATUS), 400), str(error))
    except ValidationError as error:
        first = error.errors()[0]
        return _problem(400, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}")
    except StorageFull as error:
        return _problem(507, f"the registry's storage is full: {error}")
    except web.HTTPNotFound:
        return _problem(404, f"no admin endpoint at {request.path}")
    except web.HTTPMethodNotAllowed as error:
        return web.json_response({"error": f"{request.method} is not allowed on {request.path}"}, status=405,
                                 headers={"Allow": error.headers.get("Allow", "")})  # fmt: skip


async def caller(request: web.Request, *, required: bool = True) -> User | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        if required:
            raise web.HTTPUnauthorized(
                text='{"error": "authentication required"}',
                content_type="application/json",
                headers={"WWW-Authenticate": 'Basic realm="dockyard"'},
            )
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        username, password = "", ""
    user = await sign_in(request, username, password)
    if user is None:
        raise web.HTTPUnauthorized(
            text='{"error": "incorrect username or password"}',
            content_type="application/json",
            headers={"WWW-Authenticate": 'Basic realm="dockyard"'},
        )
    return user


async def signed_in(request: web.Request) -> User:
    """The caller, who must present valid Basic credentials (401 otherwise)."""
    user = await caller(request)
    assert user is not None  # caller() raises when credentials are required and missing
    return user


async def account_manager(request: web.Request) -> User:
    """The caller, signed in with a password or an admin-scoped access token: a token of a
    narrower scope (read, write, delete) works on repositories and never on accounts."""
    user = await signed_in(request)
    if not user.manages_account:
        raise Forbidden(f"an access token of scope {user.token_scope!r} cannot manage accounts; use one of scope 'admin'")
    return user


def _path_account(request: web.Request, key: str) -> str:
    """A user or organization name from the path, checked before it reaches storage."""
    return validate_account_name(request.match_info[key])  # InvalidAccountName is a HubError: 400


def _path_id(request: web.Request, key: str) -> str:
    """A token or webhook ID from the path: the hex the registry made, nothing else."""
    value = request.match_info[key]
    if not (1 <= len(value) <= 64) or not value.isalnum() or not value.isascii():
        raise NotFound(f"no {key.replace('_id', '')} {value!r}")
    return value


async def _self_or_admin(request: web.Request) -> str:
    """The `{user}` of the path, which only that user or a site admin may manage."""
    name = _path_account(request, "user")
    user = await account_manager(request)
    if not user.admin and user.name != name:
        raise Forbidden("only the user themself or a site admin may do this")
    return name


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(await request.json())
    except RecursionError:
        raise HubError("request body is nested too deeply") from None
    except ValueError as error:  # not JSON, or an integer of thousands of digits
        if isinstance(error, ValidationError):
            raise
        raise HubError("request body must be JSON") from None


class NewUser(BaseModel):
    name: str
    password: str
    admin: bool = False


class Password(BaseModel):
    password: str


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: TokenScope = "admin"


class NewOrganization(BaseModel):
    name: str


class Membership(BaseModel):
    role: Role


class RepositoryUpdate(BaseModel):
    visibility: Visibility | None = None
    description: str | None = None
    full_description: str | None = Field(default=None, max_length=25_000, description="the README, Markdown")


class NewWebhook(BaseModel):
    url: str
    events: list[EventKind] = ["push", "delete"]
    secret: str | None = None


# -- users ---------------------------------------------------------------------------------
async def create_user(request: web.Request) -> web.Response:
    user = await account_manager(request)
    if not user.admin:
        raise Forbidden("only site admins create users")
    body = await _body(request, NewUser)
    created = await services(request).hub.users.create(body.name, body.password, admin=body.admin)
    return web.json_response({"name": created.name, "admin": created.admin}, status=201)


async def list_users(request: web.Request) -> web.Response:
    user = await signed_in(request)
    if not user.admin:
        raise Forbidden("only site admins list users")
    return web.json_response({"users": await services(request).hub.users.names()})


async def change_password(request: web.Request) -> web.Response:
    name = await _self_or_admin(request)
    body = await _body(request, Password)
    await services(request).hub.users.set_password(name, body.password)
    return web.Response(status=204)


async def create_token(request: web.Request) -> web.Response:
    name = await _self_or_admin(request)
    body = await _body(request, NewToken)
    record, secret = await services(request).hub.tokens.create(name, body.name, body.scope)
    return web.json_response({"id": record.id, "name": record.name, "scope": record.scope, "token": secret}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    name = await _self_or_admin(request)
    records = await services(request).hub.tokens.of(name)
    listed = [{"id": r.id, "name": r.name, "scope": r.scope, "created": r.created, "last_used": r.last_used} for r in records]
    return web.json_response({"tokens": listed})


async def revoke_token(request: web.Request) -> web.Response:
    name = await _self_or_admin(request)
    await services(request).hub.tokens.revoke(name, _path_id(request, "token_id"))
    return web.Response(status=204)


async def end_sessions(request: web.Request) -> web.Response:
    """Sign out everywhere: every web session and refresh token of the user ends."""
    name = await _self_or_admin(request)
    await services(request).hub.users.end_sessions(name)
    return web.Response(status=204)


# -- organizations -------------------------------------------------------------------------
async def create_organization(request: web.Request) -> web.Response:
    user = await account_manager(request)
    body = await _body(request, NewOrganization)
    org = await services(request).hub.organizations.create(body.name, user.name)
    return web.json_response({"name": org.name, "members": org.members}, status=201)


async def get_organization(request: web.Request) -> web.Response:
    org_name = _path_account(request, "org")
    user = await signed_in(request)
    org = await services(request).hub.organizations.require(org_name)
    if not user.admin and user.name not in org.members:
        raise NotFound(f"no organization {org.name!r}")
    return web.json_response({"name": org.name, "members": org.members})


async def _org_admin(request: web.Request) -> str:
    org_name = _path_account(request, "org")
    user = await account_manager(request)
    org = await services(request).hub.organizations.require(org_name)
    if not user.admin and org.members.get(user.name) != "admin":
        raise Forbidden(f"only admins of {org.name!r} manage its members")
    return org.name


async def set_member(request: web.Request) -> web.Response:
    org_name = await _org_admin(request)
    body = await _body(request, Membership)
    org = await services(request).hub.organizations.set_member(org_name, _path_account(request, "user"), body.role)
    return web.json_response({"name": org.name, "members": org.members})


async def remove_member(request: web.Request) -> web.Response:
    org_name = await _org_admin(request)
    await services(request).hub.organizations.set_member(org_name, _path_account(request, "user"), None)
    return web.Response(status=204)


# -- repositories --------------------------------------------------------------------------
def _repository_name(request: web.Request) -> str:
    try:
        return validate_repository(request.match_info["name"])
    except InvalidName as error:
        raise HubError(str(error)) from None


async def _visible_repository(request: web.Request, user: User | None, action: str) -> RepositorySettings:
    name = _repository_name(request)
    registry = services(request)
    settings = await registry.hub.repositories.get(name)
    actions = await repository_actions(registry.hub, user, name) if registry.signer else {"pull", "admin"}
    if settings is None or "pull" not in actions:
        raise NotFound(f"no repository {name!r}")
    if action not in actions:
        raise Forbidden(f"{action} on {name!r} is not permitted")
    return settings


async def _repository_json(request: web.Request, settings: RepositorySettings, user: User | None) -> dict[str, Any]:
    starred = user is not None and await services(request).hub.repositories.starred(settings.name, user.name)
    return {
        "name": settings.name,
        "visibility": settings.visibility,
        "description": settings.description,
        "full_description": settings.full_description,
        "star_count": settings.star_count,
        "starred": starred,
        "pull_count": settings.pull_count,
        "last_pulled": settings.last_pulled,
        "push_count": settings.push_count,
        "pushed": settings.pushed,
        "created": settings.created,
    }


async def get_repository(request: web.Request) -> web.Response:
    user = await caller(request, required=False)
    settings = await _visible_repository(request, user, "pull")
    return web.json_response(await _repository_json(request, settings, user))


async def update_repository(request: web.Request) -> web.Response:
    """Changes only the fields the body names, so concurrent updates of different fields both hold."""
    user = await caller(request)
    settings = await _visible_repository(request, user, "admin")
    body = await _body(request, RepositoryUpdate)
    settings = await services(request).hub.repositories.update(settings.name, **body.model_dump(exclude_none=True))
    return web.json_response(await _repository_json(request, settings, user))


async def delete_repository(request: web.Request) -> web.Response:
    """The whole repository: tags, manifests, settings, stars, webhooks (blobs wait for gc)."""
    settings = await _visible_repository(request, await caller(request), "admin")
    await services(request).delete_repository(settings.name)
    return web.Response(status=204)


async def star_repository(request: web.Request) -> web.Response:
    user = await signed_in(request)
    settings = await _visible_repository(request, user, "pull")
    settings = await services(request).hub.repositories.star(settings.name, user.name, request.method == "PUT")
    return web.json_response(await _repository_json(request, settings, user))


# -- webhooks ------------------------------------------------------------------------------
def _webhook_json(hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "events": hook.events, "signed": hook.secret is not None, "created": hook.created}


async def create_webhook(request: web.Request) -> web.Response:
    settings = await _visible_repository(request, await caller(request), "admin")
    body = await _body(request, NewWebhook)
    hook = await services(request).webhooks.store.add(settings.name, body.url, body.events, body.secret)
    return web.json_response(_webhook_json(hook), status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    settings = await _visible_repository(request, await caller(request), "admin")
    hooks = await services(request).webhooks.store.list(settings.name)
    return web.json_response({"webhooks": [_webhook_json(hook) for hook in hooks]})


async def list_deliveries(request: web.Request) -> web.Response:
    """The recent deliveries to one webhook, by any replica, oldest first."""
    settings = await _visible_repository(request, await caller(request), "admin")
    webhook_id = _path_id(request, "webhook_id")
    registry = services(request)
    if webhook_id not in {hook.id for hook in await registry.webhooks.store.list(settings.name)}:
        raise NotFound(f"repository {settings.name!r} has no webhook {webhook_id!r}")
    deliveries = await registry.webhooks.deliveries(webhook_id)
    return web.json_response({"deliveries": [dataclasses.asdict(delivery) for delivery in deliveries]})


async def delete_webhook(request: web.Request) -> web.Response:
    settings = await _visible_repository(request, await caller(request), "admin")
    await services(request).webhooks.store.remove(settings.name, _path_id(request, "webhook_id"))
    return web.Response(status=204)


def admin_app() -> web.Application:
    """The admin API, mounted at /api/v1 with its own error dialect."""
    app = web.Application(middlewares=[admin_errors])
    route = app.router.add_route
    route("POST", "/users", create_user)
    route("GET", "/users", list_users)
    route("PUT", "/users/{user}/password", change_password)
    route("POST", "/users/{user}/tokens", create_token)
    route("GET", "/users/{user}/tokens", list_tokens)
    route("DELETE", "/users/{user}/tokens/{token_id}", revoke_token)
    route("DELETE", "/users/{user}/sessions", end_sessions)
    route("POST", "/orgs", create_organization)
    route("GET", "/orgs/{org}", get_organization)
    route("PUT", "/orgs/{org}/members/{user}", set_member)
    route("DELETE", "/orgs/{org}/members/{user}", remove_member)
    route("PUT", "/repositories/{name:[^{}]+?}/-/star", star_repository)
    route("DELETE", "/repositories/{name:[^{}]+?}/-/star", star_repository)
    route("POST", "/repositories/{name:[^{}]+?}/-/webhooks", create_webhook)
    route("GET", "/repositories/{name:[^{}]+?}/-/webhooks", list_webhooks)
    route("DELETE", "/repositories/{name:[^{}]+?}/-/webhooks/{webhook_id}", delete_webhook)
    route("GET", "/repositories/{name:[^{}]+?}/-/webhooks/{webhook_id}/deliveries", list_deliveries)
    route("GET", "/repositories/{name:[^{}]+}", get_repository)
    route("PATCH", "/repositories/{name:[^{}]+}", update_repository)
    route("DELETE", "/repositories/{name:[^{}]+}", delete_repository)
    return app
