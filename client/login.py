"""`login` and `logout`: credentials checked against the registry's /v2/ (through the same
challenge flow as every request) before anything is saved to `config.json`, and removed again."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from ocispec.reference import normalize_registry

from .auth import Credentials
from .credentials import remove_credentials, save_credentials
from .distribution import RegistryClient
from .errors import AuthenticationRequired
from .registry_http import ClientSettings, new_session


async def verify_credentials(
    registry: str,
    credentials: Credentials,
    *,
    settings: ClientSettings | None = None,
    session: aiohttp.ClientSession | None = None,
) -> None:
    """GET /v2/ with `credentials`; raises AuthenticationFailed when the registry refuses them."""
    settings = settings or ClientSettings()
    own_session = session is None
    session = session or new_session()
    try:
        await RegistryClient(settings.transport(session, registry, credentials)).sign_in()  # an open registry takes any
    except AuthenticationRequired as error:
        raise type(error)(f"login to {registry} failed: {error.message.rsplit(': ', 1)[-1]}", status=error.status) from None
    finally:
        if own_session:
            await session.close()


async def login(
    registry: str,
    username: str,
    password: str,
    config_dir: Path | None = None,
    *,
    settings: ClientSettings | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Path:
    """Check `username`/`password` against `registry`, then save them; returns config.json's path."""
    registry = normalize_registry(registry)
    credentials = Credentials(username, password)
    await verify_credentials(registry, credentials, settings=settings, session=session)
    directory = config_dir if config_dir is not None else (settings.config_dir if settings else None)
    return save_credentials(registry, credentials, directory)


def logout(registry: str, config_dir: Path | None = None) -> bool:
    """Remove `registry`'s saved credentials; False when there were none ("Not logged in")."""
    return remove_credentials(registry, config_dir)
