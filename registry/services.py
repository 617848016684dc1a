"""The registry's domain services, built once per app over one storage backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from storage_backends import StorageBackend

from .blobs import Blobs
from .config import RegistryOptions, Settings
from .hub.accounts import Accounts
from .hub.webhooks import Webhooks
from .manifests import Manifests
from .ratelimit import SignInGate, SlidingWindowLimiter
from .repositories import Repositories
from .uploads import Uploads

if TYPE_CHECKING:
    from .hub.tokens import TokenSigner


@dataclass
class Services:
    storage: StorageBackend
    settings: Settings
    repositories: Repositories
    blobs: Blobs
    uploads: Uploads
    manifests: Manifests
    accounts: Accounts
    signer: TokenSigner | None
    """Signs bearer tokens; None when auth is disabled."""
    pull_limiter: SlidingWindowLimiter | None
    sign_in_gate: SignInGate
    webhooks: Webhooks

    @property
    def options(self) -> RegistryOptions:
        return self.settings.registry

    @classmethod
    def over(cls, storage: StorageBackend, settings: Settings) -> Services:
        accounts = Accounts(storage, settings.auth.default_visibility)
        repositories = Repositories(storage, on_created=accounts.ensure_repository)
        blobs = Blobs(storage, repositories)
        auth = settings.auth
        signer = None
        if auth.enabled:
            from .hub.tokens import TokenSigner  # the JOSE stack is loaded only with auth on

            signer = TokenSigner.from_file(auth.token_key_file, issuer=auth.issuer, service=auth.service, ttl=auth.token_ttl)
        return cls(
            storage=storage,
            settings=settings,
            repositories=repositories,
            blobs=blobs,
            uploads=Uploads(storage, blobs),
            manifests=Manifests(storage, blobs, repositories),
            accounts=accounts,
            signer=signer,
            sign_in_gate=SignInGate(SlidingWindowLimiter(auth.sign_in_failures, auth.sign_in_window)),
            pull_limiter=SlidingWindowLimiter(auth.rate_limit.pulls, auth.rate_limit.window) if auth.rate_limit.enabled else None,
            webhooks=Webhooks(storage, allow_private_networks=settings.webhooks.allow_private_networks),
        )


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
