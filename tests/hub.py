"""Helpers for tests of the Hub: an auth-enabled app, users, and bearer tokens."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient

from registry.api.app import create_app
from registry.config import AuthSettings, Settings, WebhookSettings

ADMIN = ("admin", "admin-password")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def hub_settings(**auth: Any) -> Settings:
    """Auth on; webhooks may reach loopback, where the tests' receivers listen."""
    return Settings(
        auth=AuthSettings(enabled=True, admin_user=ADMIN[0], admin_password=ADMIN[1], **auth),
        webhooks=WebhookSettings(allow_private_networks=True),
    )


async def hub_client(aiohttp_client, storage, **auth: Any) -> TestClient:
    return await aiohttp_client(create_app(storage, hub_settings(**auth)))


async def create_user(client: TestClient, name: str, password: str = "pw-123456") -> tuple[str, str]:
    response = await client.post("/api/v1/users", json={"name": name, "password": password}, headers=basic(*ADMIN))
    assert response.status == 201, await response.text()
    return name, password


async def token(client: TestClient, credentials: tuple[str, str] | None, *scopes: str) -> dict[str, Any]:
    headers = basic(*credentials) if credentials else {}
    response = await client.get("/token", params=[("service", "dockyard"), *[("scope", s) for s in scopes]], headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def bearer(client: TestClient, credentials: tuple[str, str] | None, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await token(client, credentials, *scopes))['token']}"}
