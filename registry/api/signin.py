"""Every password or access-token check of the HTTP layer goes through here, so failures are
throttled per client address and user name (`auth.sign_in_failures` per `auth.sign_in_window`):
past the limit, 429 with Retry-After, even for the right password, until the window passes.

Attempts in flight count: a check takes ~65 ms (bcrypt), so a burst of parallel guesses would
otherwise all pass the limit before the first failure is recorded. An attempt is admitted only
while the failures recorded plus the attempts still being checked stay under the limit; one
that would exceed it waits for those in flight to end, then is admitted (they succeeded) or
refused (they failed). Successes are never counted, so a client's parallel requests with the
right password all pass.
"""

from __future__ import annotations

from aiohttp import web

from ..core.hub.models import User
from ..core.ratelimit import Throttled
from .context import services


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
    try:
        return await registry.sign_in_gate.attempt(
            f"{request.remote}|{username}", lambda: registry.hub.users.authenticate(username, secret)
        )
    except Throttled as refused:
        raise TooManySignIns(refused.retry_after) from None
