"""Client authentication: challenges, config.json, login/logout, Basic and the token flow.

Against real servers over loopback: the reference registry behind htpasswd Basic auth, and
the reference registry behind token auth with a token server written here
(`tests/reference_registry.py`), whose JWTs the registry really verifies.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from client.auth import Credentials, choose_challenge, parse_www_authenticate
from client.credentials import DOCKER_HUB_KEY, load_credentials, remove_credentials, save_credentials
from client.distribution import RegistryClient, client_for, search
from client.errors import AccessDenied, AuthenticationFailed, AuthenticationRequired, ImageNotFound
from client.login import login, logout
from client.registry_http import ClientSettings, new_session
from tests.conftest import HUB_ADMIN, RegistryProcess
from tests.oci import random_image
from tests.reference_registry import (  # noqa: F401  (reference_registry_basic is a fixture)
    USERS,
    ReferenceRegistry,
    TokenRegistry,
    reference_registry_basic,
    requires_reference_registry,
    start_token_registry,
    stop_token_registry,
)

ALICE = Credentials("alice", USERS["alice"])


# -- WWW-Authenticate -----------------------------------------------------------------------------


def test_bearer_challenge_with_quoted_commas_parses() -> None:
    header = 'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"'
    [challenge] = parse_www_authenticate([header])
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:a/b:pull,push",
    }


def test_several_challenges_in_one_header_and_bearer_is_preferred() -> None:
    challenges = parse_www_authenticate(['Basic realm="basic-realm", Bearer realm="http://t/token", error="insufficient_scope"'])
    assert [challenge.scheme for challenge in challenges] == ["basic", "bearer"]
    assert challenges[1].params == {"realm": "http://t/token", "error": "insufficient_scope"}
    assert choose_challenge(challenges) == challenges[1]


def test_unknown_schemes_and_escapes() -> None:
    challenges = parse_www_authenticate(['Negotiate', 'BASIC realm="say \\"hi\\""'])
    assert choose_challenge(challenges).params == {"realm": 'say "hi"'}
    assert choose_challenge(parse_www_authenticate(["Negotiate abc=="])) is None


def test_credentials_never_print_the_password() -> None:
    assert USERS["alice"] not in repr(ALICE)


# -- config.json ----------------------------------------------------------------------------------


def test_saved_credentials_are_docker_compatible_and_private(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"auths": {}, "psFormat": "table {{.ID}}"}))
    path = save_credentials("localhost:5000", ALICE, config)
    document = json.loads(path.read_text())
    assert document["psFormat"] == "table {{.ID}}"  # other settings survive
    assert base64.b64decode(document["auths"]["localhost:5000"]["auth"]) == b"alice:wonderland"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials("localhost:5000", config) == ALICE
    assert load_credentials("http://localhost:5000/", config) == ALICE  # any spelling of the registry
    assert load_credentials("localhost:5001", config) is None


def test_docker_hub_uses_dockers_key(tmp_path: Path) -> None:
    save_credentials("docker.io", ALICE, tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    assert list(document["auths"]) == [DOCKER_HUB_KEY]
    assert load_credentials("index.docker.io", tmp_path) == ALICE
    assert remove_credentials("registry-1.docker.io", tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auths"] == {}


def test_identity_tokens_and_docker_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://registry.example.com": {"auth": "", "identitytoken": "refresh-me"}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    credentials = load_credentials("registry.example.com")
    assert credentials == Credentials(None, None, "refresh-me")


def test_logout_of_a_registry_never_logged_into_says_so(tmp_path: Path) -> None:
    assert logout("localhost:5000", tmp_path) is False
    assert not (tmp_path / "config.json").exists()


# -- Basic auth (reference registry with htpasswd) ---------------------------------------------------


async def push_test_image(client: RegistryClient, repository: str, tmp_path: Path, tag: str = "1.0") -> str:
    """Blobs and manifest of a small random image pushed through the client's own API."""
    image = random_image(layers=2)
    for blob in [image.config, *image.layers]:
        path = tmp_path / blob.digest.split(":")[1]
        path.write_bytes(blob.data)
        await client.upload_blob(repository, blob.digest, len(blob.data), path)
    return await client.put_manifest(repository, tag, image.manifest, image.media_type)


@requires_reference_registry
async def test_login_saves_verified_credentials_and_logout_removes_them(
    reference_registry_basic: ReferenceRegistry, tmp_path: Path
) -> None:
    config = tmp_path / "docker-config"
    path = await login(reference_registry_basic.host, "alice", "wonderland", config)
    assert load_credentials(reference_registry_basic.host, config) == ALICE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert logout(reference_registry_basic.host, config) is True
    assert load_credentials(reference_registry_basic.host, config) is None


@requires_reference_registry
async def test_login_with_a_wrong_password_fails_clearly_and_saves_nothing(
    reference_registry_basic: ReferenceRegistry, tmp_path: Path
) -> None:
    config = tmp_path / "docker-config"
    with pytest.raises(AuthenticationFailed) as raised:
        await login(reference_registry_basic.host, "alice", "not-the-password", config)
    assert str(raised.value) == f"login to {reference_registry_basic.host} failed: incorrect username or password"
    assert not (config / "config.json").exists()


@requires_reference_registry
async def test_basic_auth_push_and_pull_with_saved_credentials(
    reference_registry_basic: ReferenceRegistry, tmp_path: Path
) -> None:
    registry = reference_registry_basic.host
    settings = ClientSettings(config_dir=tmp_path / "docker-config")
    await login(registry, "alice", "wonderland", settings.config_dir)
    async with new_session() as session:
        client = client_for(registry, session, settings)
        await client.ping()
        digest = await push_test_image(client, "acme/app", tmp_path)
        manifest = await client.get_manifest("acme/app", "1.0")
        assert manifest.digest == digest
        assert await client.list_tags("acme/app") == ["1.0"]
        # a second client from the same config.json sends Basic from its first real request
        requests_before = client.transport.requests
        await client.get_manifest("acme/app", digest)
        assert client.transport.requests == requests_before + 1


@requires_reference_registry
async def test_basic_auth_without_credentials_is_a_clear_401(reference_registry_basic: ReferenceRegistry, tmp_path: Path) -> None:
    registry = reference_registry_basic.host
    async with new_session() as session:
        client = client_for(registry, session, ClientSettings(config_dir=tmp_path / "empty"))
        with pytest.raises(AuthenticationRequired) as raised:
            await client.get_manifest("acme/app", "1.0")
    assert str(raised.value) == f"pull access denied for {registry}/acme/app: authentication required"
    assert raised.value.status == 401


@requires_reference_registry
async def test_basic_auth_with_a_wrong_saved_password_says_so(reference_registry_basic: ReferenceRegistry, tmp_path: Path) -> None:
    registry = reference_registry_basic.host
    async with new_session() as session:
        client = client_for(registry, session, credentials=Credentials("alice", "wrong"))
        with pytest.raises(AuthenticationFailed) as raised:
            await push_test_image(client, "acme/app", tmp_path)
    assert str(raised.value) == f"push access denied for {registry}/acme/app: incorrect username or password"


# -- token auth (reference registry trusting a token server) ------------------------------------------


@pytest.fixture
async def token_registry(tmp_path: Path):
    running = await start_token_registry(tmp_path / "token-auth")
    try:
        yield running
    finally:
        await stop_token_registry(running)


@requires_reference_registry
async def test_token_flow_push_pull_with_a_token_cached_per_scope(token_registry: TokenRegistry, tmp_path: Path) -> None:
    registry = token_registry.registry.host
    tokens = token_registry.tokens
    config = tmp_path / "docker-config"
    await login(registry, "alice", "wonderland", config)
    assert [(r.method, r.user, r.scopes) for r in tokens.requests] == [("GET", "alice", [])]

    async with new_session() as session:
        client = client_for(registry, session, ClientSettings(config_dir=config))
        await client.ping()
        digest = await push_test_image(client, "acme/app", tmp_path)
        push_tokens = len(tokens.requests)
        assert [r.scopes for r in tokens.requests[1:]] == [["repository:acme/app:pull,push"]]  # one token for 4 requests

        manifest = await client.get_manifest("acme/app", "1.0")
        await client.get_manifest("acme/app", digest)
        assert manifest.digest == digest
        assert [r.scopes for r in tokens.requests[push_tokens:]] == [["repository:acme/app:pull"]]
        assert all(r.user == "alice" for r in tokens.requests)
        assert await client.catalog() == ["acme/app"]


@requires_reference_registry
async def test_token_flow_with_a_wrong_password_fails_at_the_token_service(token_registry: TokenRegistry, tmp_path: Path) -> None:
    registry = token_registry.registry.host
    with pytest.raises(AuthenticationFailed) as raised:
        await login(registry, "alice", "nope", tmp_path / "config")
    assert str(raised.value) == f"login to {registry} failed: incorrect username or password"
    async with new_session() as session:
        client = client_for(registry, session, credentials=Credentials("alice", "nope"))
        with pytest.raises(AuthenticationFailed):
            await client.get_manifest("acme/app", "1.0")


@requires_reference_registry
async def test_anonymous_tokens_pull_public_images_only(token_registry: TokenRegistry, tmp_path: Path) -> None:
    registry = token_registry.registry.host
    async with new_session() as session:
        alice = client_for(registry, session, credentials=ALICE)
        digest = await push_test_image(alice, "public/tool", tmp_path)
        await push_test_image(alice, "acme/secret", tmp_path)

        anonymous = client_for(registry, session, ClientSettings(config_dir=tmp_path / "none"))
        assert (await anonymous.get_manifest("public/tool", "1.0")).digest == digest
        assert all(request.user is None for request in token_registry.tokens.requests[-1:])
        with pytest.raises(AuthenticationRequired) as raised:
            await anonymous.get_manifest("acme/secret", "1.0")
        assert str(raised.value) == f"pull access denied for {registry}/acme/secret: authentication required"
        with pytest.raises(AuthenticationRequired) as raised:
            await push_test_image(anonymous, "public/tool", tmp_path, tag="2.0")
        assert str(raised.value) == f"push access denied for {registry}/public/tool: authentication required"
        with pytest.raises(ImageNotFound) as missing:
            await alice.get_manifest("acme/secret", "no-such-tag")
        assert str(missing.value) == f"manifest for {registry}/acme/secret:no-such-tag not found: manifest unknown"


@requires_reference_registry
async def test_access_token_field_and_refresh_tokens_by_oauth2_post(tmp_path: Path) -> None:
    running = await start_token_registry(tmp_path / "oauth", token_field="access_token", issue_refresh_tokens=True)
    try:
        registry = running.registry.host
        tokens = running.tokens
        async with new_session() as session:
            alice = client_for(registry, session, credentials=ALICE)
            digest = await push_test_image(alice, "acme/app", tmp_path)  # answered with access_token
            assert tokens.requests[-1].method == "GET"
            # the refresh token the GET handed out is now used by POST for a new scope
            await alice.get_manifest("acme/app", "1.0")
            assert (tokens.requests[-1].method, tokens.requests[-1].grant_type) == ("POST", "refresh_token")

            # an identity token from config.json, alone, is exchanged by POST
            tokens.refresh_tokens["identity-123"] = "alice"
            save_credentials(registry, Credentials(identity_token="identity-123"), tmp_path / "config")
            holder = client_for(registry, session, ClientSettings(config_dir=tmp_path / "config"))
            assert (await holder.get_manifest("acme/app", digest)).digest == digest
            assert (tokens.requests[-1].method, tokens.requests[-1].user) == ("POST", "alice")

            forged = client_for(registry, session, credentials=Credentials(identity_token="forged"))
            with pytest.raises(AuthenticationFailed):
                await forged.get_manifest("acme/app", digest)
    finally:
        await stop_token_registry(running)


@requires_reference_registry
async def test_cross_repository_mount_asks_one_token_for_both_scopes(token_registry: TokenRegistry, tmp_path: Path) -> None:
    registry = token_registry.registry.host
    async with new_session() as session:
        alice = client_for(registry, session, credentials=ALICE)
        image = random_image(layers=1)
        path = tmp_path / "layer"
        path.write_bytes(image.layers[0].data)
        await alice.upload_blob("acme/base", image.layers[0].digest, len(image.layers[0].data), path)
        assert await alice.mount_blob("acme/app", image.layers[0].digest, "acme/base") is None
        assert sorted(token_registry.tokens.requests[-1].scopes) == ["repository:acme/app:pull,push", "repository:acme/base:pull"]
        assert await alice.blob_size("acme/app", image.layers[0].digest) == len(image.layers[0].data)


@requires_reference_registry
async def test_denied_when_the_token_lacks_the_scope(tmp_path: Path) -> None:
    running = await start_token_registry(tmp_path / "limited")
    try:
        registry = running.registry.host
        # bob exists but the token server grants him nothing outside public/
        running.tokens.users["bob"] = "builder"
        original = running.tokens._grant
        running.tokens._grant = staticmethod(lambda user, scope: original(None if user == "bob" else user, scope))  # type: ignore[method-assign]
        async with new_session() as session:
            bob = client_for(registry, session, credentials=Credentials("bob", "builder"))
            with pytest.raises(AccessDenied) as raised:
                await bob.get_manifest("acme/app", "1.0")
        assert str(raised.value).startswith(f"pull access denied for {registry}/acme/app: ")
    finally:
        await stop_token_registry(running)


def test_config_dir_defaults_to_home_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    save_credentials("localhost:5000", ALICE)
    assert (tmp_path / ".docker" / "config.json").exists()
    assert os.stat(tmp_path / ".docker").st_mode & 0o077 == 0


# -- Dockyard's own token service ----------------------------------------------------------------

DOCKYARD_ADMIN = HUB_ADMIN


async def test_token_flow_against_dockyard(hub_process: RegistryProcess, tmp_path: Path) -> None:
    dockyard_with_auth = hub_process
    registry = f"{dockyard_with_auth.host}:{dockyard_with_auth.port}"
    async with new_session() as session:
        admin = "Basic " + base64.b64encode(":".join(DOCKYARD_ADMIN).encode()).decode()
        async with session.post(
            f"{dockyard_with_auth.url}/api/v1/users",
            json={"name": "alice", "password": "alice-pw"},
            headers={"Authorization": admin},
        ) as created:
            assert created.status == 201, await created.text()

        config = tmp_path / "docker-config"
        with pytest.raises(AuthenticationFailed):
            await login(registry, "alice", "wrong", config, session=session)
        await login(registry, "alice", "alice-pw", config, session=session)

        alice = client_for(registry, session, ClientSettings(config_dir=config))
        await alice.ping()
        digest = await push_test_image(alice, "alice/app", tmp_path)
        assert (await alice.get_manifest("alice/app", "1.0")).digest == digest

        anonymous = client_for(registry, session, ClientSettings(config_dir=tmp_path / "nobody"))
        with pytest.raises(AuthenticationRequired) as raised:  # anonymous callers are asked to sign in, as on Docker Hub
            await anonymous.get_manifest("alice/app", "1.0")
        message = str(raised.value)
        assert message.startswith(f"pull access denied for {registry}/alice/app: ")
        assert "authentication required" in message

        # search sees the private repository only with alice's credentials
        found = await search(f"{registry}/app", settings=ClientSettings(config_dir=config), session=session)
        assert [result.name for result in found.results] == ["alice/app"] and not found.from_catalog
        found = await search(f"{registry}/app", settings=ClientSettings(config_dir=tmp_path / "nobody"), session=session)
        assert found.results == []
