"""Docker registry bearer tokens: the JWTs that grant scopes (imported only with auth on).

Tokens follow the Docker token-auth spec (docs/spec/auth/jwt.md): claims `iss`, `sub`, `aud`,
`exp`, `nbf`, `iat`, `jti` and `access: [{type, name, actions}]`, signed with the key from
configuration (`auth.token_key_file`, shared by replicas) using ES256 or RS256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .scopes import InvalidToken, Scope

LEEWAY_SECONDS = 30
_run_key: ec.EllipticCurvePrivateKey | None = None


def share_generated_key() -> None:
    """Generate this run's key now, before worker processes are forked, so every worker signs
    and verifies with the same one when no `auth.token_key_file` is configured."""
    global _run_key
    _run_key = ec.generate_private_key(ec.SECP256R1())


def shared_key_pem() -> bytes:
    """The key `share_generated_key` made, for a worker started later (`share_key`)."""
    assert _run_key is not None
    return _run_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def share_key(pem: bytes) -> None:
    global _run_key
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    _run_key = key


class TokenSigner:
    def __init__(self, private_key: Any, *, issuer: str, service: str, ttl: int) -> None:
        self.issuer = issuer
        self.service = service
        self.ttl = ttl
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.algorithm = "ES256" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "RS256"
        public_der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = hashlib.sha256(public_der).hexdigest()[:32]

    @classmethod
    def from_file(cls, path: Path | None, **options: Any) -> TokenSigner:
        """The configured key, or a key generated for this run (shared by its worker processes,
        see `share_generated_key`; replicas need the file)."""
        if path is None:
            return cls(_run_key or ec.generate_private_key(ec.SECP256R1()), **options)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError(f"{path}: token key must be an EC (P-256) or RSA private key")
        return cls(key, **options)

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte secret for `purpose` (e.g. signing web sessions), the same on every replica
        that shares the token key; it reveals nothing about the key itself."""
        private_der = self._private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return hmac.new(private_der, f"dockyard:{purpose}".encode(), hashlib.sha256).digest()

    def issue(self, subject: str, scopes: list[Scope]) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": secrets.token_hex(16),
            "access": [scope.claim() for scope in scopes],
        }
        token = jwt.encode(claims, self._private_key, algorithm=self.algorithm, headers={"kid": self.key_id})
        return token, self.ttl

    def verify(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                self._public_key,
                algorithms=[self.algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
