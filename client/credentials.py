"""Registry credentials in Docker's `config.json`: found, read, saved and removed.

The file is Docker's: `{"auths": {"<registry>": {"auth": base64("user:password")}}}` (an
`identitytoken` may stand beside or instead of `auth`), found in the directory given, else
`$DOCKER_CONFIG`, else `~/.docker`. Docker Hub's key is `https://index.docker.io/v1/`, as the
docker CLI writes it. Writes keep every other key of the file, are atomic (temp file, fsync,
rename) and leave it mode 0600. Credential helpers (`credsStore`, `credHelpers`) are not run.

This module only handles the file; `client.login` checks credentials against a registry.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ocispec.reference import DOCKER_HUB, InvalidReference, normalize_registry

from .auth import Credentials
from .errors import ClientError

CONFIG_FILE = "config.json"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"


class CredentialsFileError(ClientError):
    """config.json exists but cannot be read or understood."""


def docker_config_dir(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("DOCKER_CONFIG"):
        return Path(os.environ["DOCKER_CONFIG"])
    return Path.home() / ".docker"


def _config_path(directory: Path | None) -> Path:
    return docker_config_dir(directory) / CONFIG_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise CredentialsFileError(f"cannot read {path}: {error}") from None
    if not isinstance(document, dict):
        raise CredentialsFileError(f"{path} must hold a JSON object")
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(document, handle, indent="\t")
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _key_for(registry: str) -> str:
    return DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def _matching_keys(auths: dict[str, Any], registry: str) -> list[str]:
    keys = []
    for key in auths:
        try:
            if normalize_registry(key) == registry:
                keys.append(key)
        except InvalidReference:
            continue
    return keys


def _decode(entry: dict[str, Any], key: str) -> Credentials:
    username, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CredentialsFileError(f"the auth of {key!r} in config.json is not base64 of user:password") from None
    return Credentials(username or None, password if username else None, entry.get("identitytoken") or None)


def load_credentials(registry: str, directory: Path | None = None) -> Credentials | None:
    """The saved credentials for `registry` (any spelling of it), or None."""
    registry = normalize_registry(registry)
    auths = _read(_config_path(directory)).get("auths") or {}
    for key in _matching_keys(auths, registry):
        entry = auths[key]
        if isinstance(entry, dict) and (entry.get("auth") or entry.get("username") or entry.get("identitytoken")):
            return _decode(entry, key)
    return None


def save_credentials(registry: str, credentials: Credentials, directory: Path | None = None) -> Path:
    registry = normalize_registry(registry)
    path = _config_path(directory)
    document = _read(path)
    auths = document.setdefault("auths", {})
    for key in _matching_keys(auths, registry):
        del auths[key]
    entry: dict[str, str] = {}
    if credentials.has_password:
        entry["auth"] = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    if credentials.identity_token:
        entry["identitytoken"] = credentials.identity_token
    auths[_key_for(registry)] = entry
    _write(path, document)
    return path


def remove_credentials(registry: str, directory: Path | None = None) -> bool:
    """Forget `registry`'s credentials; False when none were saved."""
    registry = normalize_registry(registry)
    path = _config_path(directory)
    document = _read(path)
    auths = document.get("auths") or {}
    keys = _matching_keys(auths, registry)
    for key in keys:
        del auths[key]
    if keys:
        _write(path, document)
    return bool(keys)
