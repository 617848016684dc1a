"""The registry's domain services, built once per app over one storage backend (content) and
one metadata database (the Hub)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage_backends import StorageBackend

from ..config import RegistryOptions, Settings
from .blobs import Blobs
from .hub import Hub
from .hub.activity import Activity
from .hub.webhooks import Webhooks
from .manifests import Manifests
from .metadata import Database
from .ratelimit import SignInGate, SlidingWindowLimiter
from .repositories import Repositories
from .uploads import Uploads

if TYPE_CHECKING:
    from .hub.signing import TokenSigner


@dataclass
class Services:
    storage: StorageBackend
    database: Database
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
    activity: Activity

    @property
    def options(self) -> RegistryOptions:
        return self.settings.registry

    async def delete_repository(self, name: str) -> None:
        """A whole repository, content references and Hub records alike (blobs wait for gc)."""
        await self.repositories.delete(name)
        await self.hub.repositories.forget(name)

    @classmethod
    def over(cls, storage: StorageBackend, database: Database, settings: Settings) -> Services:
        hub = Hub.over(database, settings.auth.default_visibility)
        repositories = Repositories(storage, on_created=hub.repositories.create_soon)
        blobs = Blobs(storage, repositories)
        auth = settings.auth
        signer = None
        if auth.enabled:
            from .hub.signing import TokenSigner  # the JOSE stack is loaded only with auth on

            signer = TokenSigner.from_file(auth.token_key_file, issuer=auth.issuer, service=auth.service, ttl=auth.token_ttl)
        manifests = Manifests(storage, blobs, repositories)
        webhooks = Webhooks(database, allow_private_networks=settings.webhooks.allow_private_networks)
        activity = Activity(database, settings.metadata.activity_interval, hub.repositories)
        manifests.listeners.extend([webhooks.notify, activity.notify])
        limit = auth.rate_limit
        return cls(
            storage=storage,
            database=database,
            settings=settings,
            repositories=repositories,
            blobs=blobs,
            uploads=Uploads(storage, blobs),
            manifests=manifests,
            hub=hub,
            signer=signer,
            sign_in_gate=SignInGate(SlidingWindowLimiter(database, "sign-in", auth.sign_in_failures, auth.sign_in_window)),
            pull_limiter=SlidingWindowLimiter(database, "pulls", limit.pulls, limit.window) if limit.enabled else None,
            webhooks=webhooks,
            activity=activity,
        )
