"""The client's typed errors, and the one place where a registry's error response becomes one.

Every error a user can meet names what it is about ("pull access denied for
localhost:5000/acme/app: authentication required"), so the CLI prints `str(error)` and nothing
more. This module never performs I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ocispec.reference import InvalidReference  # noqa: F401 - the client raises it too (platforms)


class ClientError(Exception):
    """Base of everything the client raises on purpose."""


class RegistryError(ClientError):
    """The registry answered with an error; `status`, and the spec's `code` when it sent one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class AuthenticationRequired(RegistryError):
    """401: no credentials were presented, or the ones presented were not enough."""


class AuthenticationFailed(AuthenticationRequired):
    """401 after presenting a username and password: they are wrong."""


class AccessDenied(RegistryError):
    """403, or a token without the scope asked for: authenticated, but not allowed."""


class NotFound(RegistryError):
    """404 for something other than an image (a blob, an upload session)."""


class ImageNotFound(NotFound):
    """404 for a repository, tag or manifest."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or kept failing (5xx, 429) after bounded retries."""


class DigestMismatch(ClientError):
    """Content whose sha256 differs from the digest it was fetched or pushed by."""


class PlatformNotFound(ClientError):
    """An image index has no manifest for the requested platform."""


class UnsupportedManifest(ClientError):
    """A manifest of a type the client cannot pull or push (schema 1, unknown media types)."""


@dataclass(frozen=True)
class Subject:
    """What a request is about, in the words of its error messages.

    `action` is what the user is doing ("pull", "push", "login", "search"), `name` the image or
    registry ("localhost:5000/acme/app"), `missing` what a 404 means ("manifest for
    localhost:5000/acme/app:1.0"); without it a 404 is reported as the repository missing.
    """

    action: str
    name: str
    missing: str | None = None


@dataclass(frozen=True)
class ErrorBody:
    code: str | None
    message: str | None


def parse_error_body(body: bytes) -> ErrorBody:
    """The first entry of the spec's `{"errors": [{"code", "message"}]}`, when the body is one."""
    try:
        document = json.loads(body)
        first = document["errors"][0]
        return ErrorBody(first.get("code"), first.get("message"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ErrorBody(None, None)


def _reason(body: ErrorBody, fallback: str) -> str:
    return body.message or (body.code.lower().replace("_", " ") if body.code else fallback)


def error_for_status(status: int, body: bytes, subject: Subject, *, sent: str | None = None) -> RegistryError:
    """The typed error for a final, unsuccessful response to a request about `subject`.

    `sent` says what authenticated the request: None (nothing, or an anonymous token),
    "basic" (the user's password) or "bearer" (a token obtained with the user's password).
    A 401 then means, in turn: log in; the password is wrong; the user may not do this.
    """
    parsed = parse_error_body(body)
    denied = f"{subject.action} access denied for {subject.name}"
    if status == 401 and sent == "basic":
        return AuthenticationFailed(f"{denied}: incorrect username or password", status=status, code=parsed.code)
    if status == 401 and sent is None:
        return AuthenticationRequired(f"{denied}: authentication required", status=status, code=parsed.code)
    if status in (401, 403):
        reason = _reason(parsed, "requested access to the resource is denied")
        hint = " (the repository does not exist or may require 'login')" if sent is None else ""
        return AccessDenied(f"{denied}: {reason}{hint}", status=status, code=parsed.code)
    if status == 404:
        missing = subject.missing or f"repository {subject.name}"
        code = parsed.code.lower().replace("_", " ") if parsed.code else "not found"
        kind = NotFound if missing.startswith(("blob", "upload")) else ImageNotFound
        return kind(f"{missing} not found: {code}", status=status, code=parsed.code)
    if status == 429 or status >= 500:
        reason = _reason(parsed, f"HTTP {status}")
        return RegistryUnavailable(
            f"{subject.action} of {subject.name} failed: registry unavailable ({reason})", status=status, code=parsed.code
        )
    reason = _reason(parsed, f"unexpected HTTP status {status}")
    return RegistryError(f"{subject.action} of {subject.name} failed: {reason}", status=status, code=parsed.code)
