"""The reference registry (`docker-registry`, distribution 2.8) as a test peer, and a token server.

`start_reference_registry` runs `docker-registry serve CONFIG.yml` on a free loopback port with
a temporary filesystem root and deletes enabled, open, behind htpasswd Basic auth (bcrypt
lines made here with the `bcrypt` package), or behind Docker token auth. It is stopped by PID.
Its stdout and stderr (the access log among them) go to `registry.log` beside the config.

`TokenServer` is the token side of token auth: an aiohttp app on loopback that checks Basic
credentials or an OAuth2 refresh token, and issues RS256 JWTs whose header carries the signing
certificate (`x5c`), which the reference registry verifies against its `rootcertbundle`. Users
are granted what they ask; anonymous callers only pull of `public/*`. It counts its requests.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, stop_process, wait_for_port

BINARY = "docker-registry"
USERS = {"alice": "wonderland"}
REALM = "dockyard-tests"
SERVICE = "reference-registry"
ISSUER = "dockyard-test-token-server"

requires_reference_registry = pytest.mark.usefixtures("reference_registry_installed")


@dataclass
class TokenAuth:
    realm: str
    certificate: Path
    service: str = SERVICE
    issuer: str = ISSUER


@dataclass
class ReferenceRegistry:
    url: str
    host: str
    port: int
    root: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_log(self, fragment: str) -> list[str]:
        """Access-log lines (combined format) containing `fragment`, e.g. '"GET /v2/x/blobs/'."""
        return [line for line in self.log().splitlines() if fragment in line and '" ' in line]


def htpasswd_lines(users: dict[str, str]) -> str:
    # cost 4 (bcrypt's minimum) keeps each login check fast
    return "".join(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n" for user, password in users.items())


def start_reference_registry(
    directory: Path,
    *,
    htpasswd: dict[str, str] | None = None,
    realm: str = REALM,
    token: TokenAuth | None = None,
) -> ReferenceRegistry:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    root = directory / "data"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if htpasswd is not None:
        path = directory / "htpasswd"
        path.write_text(htpasswd_lines(htpasswd))
        config["auth"] = {"htpasswd": {"realm": realm, "path": str(path)}}
    elif token is not None:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.certificate),
            }
        }
    config_path = directory / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = directory / "registry.log"
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([BINARY, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
    except Exception:
        stop_process(process)
        raise RuntimeError(f"the reference registry did not start:\n{log_path.read_text(errors='replace')}") from None
    return ReferenceRegistry(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", port, root, log_path, process)


@pytest.fixture
def reference_registry(tmp_path: Path):
    """An open reference registry."""
    running = start_reference_registry(tmp_path / "reference-registry")
    try:
        yield running
    finally:
        stop_process(running.process)


@pytest.fixture
def reference_registry_basic(tmp_path: Path):
    """A reference registry behind htpasswd Basic auth, with the users in `USERS`."""
    running = start_reference_registry(tmp_path / "reference-registry-basic", htpasswd=USERS)
    try:
        yield running
    finally:
        stop_process(running.process)


# -- token auth ------------------------------------------------------------------------------------


@dataclass
class SigningKey:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def write_bundle(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def sign(self, claims: dict[str, Any]) -> str:
        chain = [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": chain})


@dataclass
class TokenRequest:
    method: str
    user: str | None
    scopes: list[str]
    grant_type: str | None = None


@dataclass
class TokenServer:
    """Docker's token endpoint at `/token`: GET with Basic or anonymously, POST with a refresh token."""

    signing_key: SigningKey
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    token_field: str = "token"
    issue_refresh_tokens: bool = False
    lifetime: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    server: TestServer | None = None

    async def start(self) -> TokenServer:
        app = web.Application()
        app.router.add_get("/token", self._get)
        app.router.add_post("/token", self._post)
        self.server = TestServer(app, host="127.0.0.1", port=free_port())
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def realm(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/token"

    def _user_from_basic(self, request: web.Request) -> str | None | bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else False

    async def _get(self, request: web.Request) -> web.Response:
        user = self._user_from_basic(request)
        scopes = request.query.getall("scope", [])
        self.requests.append(TokenRequest("GET", user or None, scopes))
        if user is False:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}, status=401)
        return self._issue(user, scopes, request.query.get("service"), offline=request.query.get("offline_token") == "true")

    async def _post(self, request: web.Request) -> web.Response:
        form = await request.post()
        scopes = str(form.get("scope", "")).split()
        grant_type = str(form.get("grant_type"))
        user = None
        if grant_type == "refresh_token":
            user = self.refresh_tokens.get(str(form.get("refresh_token")))
        elif grant_type == "password" and self.users.get(str(form.get("username"))) == form.get("password"):
            user = str(form.get("username"))
        self.requests.append(TokenRequest("POST", user, scopes, grant_type))
        if user is None:
            return web.json_response({"error": "invalid_grant"}, status=401)
        return self._issue(user, scopes, str(form.get("service")), offline=True, oauth=True)

    def _issue(self, user: str | None, scopes: list[str], service: str | None, *, offline: bool = False, oauth: bool = False) -> web.Response:
        now = int(time.time())
        access = [grant for scope in scopes if (grant := self._grant(user, scope))]
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": service or SERVICE,
            "exp": now + self.lifetime,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = self.signing_key.sign(claims)
        body: dict[str, Any] = {"expires_in": self.lifetime, "issued_at": datetime.datetime.now(datetime.UTC).isoformat()}
        body["access_token" if oauth else self.token_field] = token
        if user and self.issue_refresh_tokens:
            refresh = secrets.token_hex(16)
            self.refresh_tokens[refresh] = user
            body["refresh_token"] = refresh
        return web.json_response(body)

    @staticmethod
    def _grant(user: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        wanted = [action for action in actions.split(",") if action]
        if user is None:
            if kind != "repository" or not name.startswith("public/"):
                return None
            wanted = [action for action in wanted if action == "pull"]
        return {"type": kind, "name": name, "actions": wanted} if wanted else None


@dataclass
class TokenRegistry:
    registry: ReferenceRegistry
    tokens: TokenServer


async def start_token_registry(directory: Path, **token_options: Any) -> TokenRegistry:
    """A token server on loopback and a reference registry trusting its signing certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    tokens = await TokenServer(key, **token_options).start()
    bundle = key.write_bundle(directory / "token-ca.pem")
    try:
        registry = start_reference_registry(directory / "registry", token=TokenAuth(tokens.realm, bundle))
    except Exception:
        await tokens.close()
        raise
    return TokenRegistry(registry, tokens)


async def stop_token_registry(running: TokenRegistry) -> None:
    stop_process(running.registry.process)
    await running.tokens.close()
