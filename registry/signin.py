"""Every password or access-token check of the HTTP layer goes through here, so failures are
throttled per client address and user name (`auth.sign_in_failures` per `auth.sign_in_window`):
past the limit, 429 with Retry-After, even for the right password, until the window passes."""

from __future__ import annotations

from aiohttp import web

from .hub.models import User
from .services import services


class TooManySignIns(web.HTTPTooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            text=f'{{"error": "too many failed sign-ins; retry in {retry_after}s"}}',
            content_type="application/json",
            headers={"Retry-After": str(retry_after)},
        )


async def sign_in(request: web.Request, username: str, secret: str) -> User | None:
    """The user those credentials prove, None when they prove nothing; TooManySignIns when
    this client has failed for that user name too often lately."""
    registry = services(request)
    key = f"{request.remote}|{username}"
    decision = registry.sign_in_throttle.peek(key)
    if not decision.allowed:
        raise TooManySignIns(decision.retry_after)
    user = await registry.accounts.authenticate(username, secret)
    if user is None:
        registry.sign_in_throttle.record(key)
    return user
