"""The registry's domain services, built once per app over one storage backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage_backends import StorageBackend

from ..config import RegistryOptions, Settings
from .blobs import Blobs
from .hub import Hub
from .hub.webhooks import Webhooks
from .manifests import Manifests
from .ratelimit import SignInGate, SlidingWindowLimiter
from .repositories import Repositories
from .uploads import Uploads

if TYPE_CHECKING:
    from .hub.signing import TokenSigner


@dataclass
class Services:
    storage: StorageBackend
    settings: Settings
    repositories: Repositories
    blobs: Blobs
    uploads: Uploads
    manifests: Manifests
    hub: Hub
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
        hub = Hub.over(storage, settings.auth.default_visibility)
        repositories = Repositories(storage, on_created=hub.repositories.ensure)
        blobs = Blobs(storage, repositories)
        auth = settings.auth
        signer = None
        if auth.enabled:
            from .hub.signing import TokenSigner  # the JOSE stack is loaded only with auth on

            signer = TokenSigner.from_file(auth.token_key_file, issuer=auth.issuer, service=auth.service, ttl=auth.token_ttl)
        manifests = Manifests(storage, blobs, repositories)
        webhooks = Webhooks(storage, allow_private_networks=settings.webhooks.allow_private_networks)
        manifests.listeners.append(webhooks.notify)
        return cls(
            storage=storage,
            settings=settings,
            repositories=repositories,
            blobs=blobs,
            uploads=Uploads(storage, blobs),
            manifests=manifests,
            hub=hub,
            signer=signer,
            sign_in_gate=SignInGate(SlidingWindowLimiter(auth.sign_in_failures, auth.sign_in_window)),
            pull_limiter=SlidingWindowLimiter(auth.rate_limit.pulls, auth.rate_limit.window) if auth.rate_limit.enabled else None,
            webhooks=webhooks,
        )
