"""Registry settings: defaults < YAML file < `DOCKYARD_*` environment < command-line flags.

Nested settings use pydantic-settings' `__` delimiter in the environment, e.g.
`DOCKYARD_STORAGE__BACKEND=s3`, `DOCKYARD_HTTP__LISTEN=0.0.0.0:5000`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from ocispec.settings_files import ConfigError, FlagsOverEnvironment, merge, one_line, read_yaml

__all__ = ["ConfigError", "Settings", "load_settings"]


class HttpSettings(BaseModel):
    listen: str = "0.0.0.0:5000"
    shutdown_timeout: float = Field(default=30.0, gt=0)
    workers: int = Field(default=0, ge=0, le=256, description="processes serving the port; 0: one per CPU core")
    io_threads: int = Field(default=64, ge=1, le=1024, description="worker threads for blocking storage calls")
    header_timeout: float = Field(
        default=30.0, gt=0, description="seconds a connection may wait between requests, or take to send a request's headers"
    )
    body_idle_timeout: float = Field(default=60.0, gt=0, description="seconds a request body may send nothing before it is abandoned")
    max_uploads_per_client: int = Field(
        default=0, ge=0, description="blob uploads one client address may have streaming at once, per worker process; 0: no cap"
    )
    public_url: str | None = Field(
        default=None, description="the registry's external base URL (https://registry.example.com); Location headers and the token realm use it"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or networks whose X-Forwarded-Proto/-Host headers are believed"
    )

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
            raise ValueError(f"public_url must be an http:// or https:// URL without query, got {value!r}")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies entries must be IP addresses or networks, got {item!r}") from None
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, separator, port = value.rpartition(":")
        if not separator or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class S3Settings(BaseModel):
    bucket: str = ""
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    redirect: bool = True


class StorageSettings(BaseModel):
    backend: Literal["filesystem", "s3"] = "filesystem"
    root: Path = Path("./data")
    s3: S3Settings = S3Settings()


class GcSettings(BaseModel):
    interval: float = Field(default=0, ge=0, description="seconds between background garbage collections; 0: none")
    grace: float = Field(default=3600, ge=0, description="seconds unreferenced content is kept, and then kept in the trash")
    delete_untagged: bool = Field(default=False, description="also remove manifests no tag reaches")


class RegistryOptions(BaseModel):
    automatic_mount: bool = Field(
        default=True,
        description="POST ?mount=<digest> without from= links the blob when the registry has it",
    )
    upload_ttl: float = Field(default=86400, gt=0, description="seconds after which an unfinished upload session is purged")
    sparse_manifests: bool = Field(
        default=False, description="accept manifests and indexes whose blobs or child manifests are not in the repository (mirrors)"
    )
    max_tags_per_push: int = Field(default=50, ge=10, description="`tag` parameters one push by digest may carry (414 beyond)")
    gc: GcSettings = GcSettings()


class RateLimitSettings(BaseModel):
    enabled: bool = False
    pulls: int = Field(default=100, gt=0, description="manifest GETs allowed per client per window")
    window: int = Field(default=21600, gt=0, description="seconds")


class AuthSettings(BaseModel):
    enabled: bool = False
    admin_user: str | None = None
    admin_password: str | None = None
    default_visibility: Literal["private", "public"] = "private"
    service: str = "dockyard"
    issuer: str = "dockyard"
    realm: str | None = Field(default=None, description="token endpoint URL in challenges; default <this host>/token")
    token_key_file: Path | None = Field(default=None, description="PEM EC/RSA key shared by replicas")
    token_ttl: int = Field(default=300, gt=0)
    sign_in_failures: int = Field(default=10, gt=0, description="failed sign-ins per client and user name per window")
    sign_in_window: int = Field(default=900, gt=0, description="seconds")
    rate_limit: RateLimitSettings = RateLimitSettings()


class WebhookSettings(BaseModel):
    allow_private_networks: bool = Field(
        default=False, description="deliver to loopback/private/link-local addresses (off: no SSRF into your network)"
    )


class MetadataSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="the Hub's database: postgresql://user:password@host/db (replicas) or sqlite:///path; "
        "default: an SQLite file in the filesystem storage root",
    )
    activity_interval: float = Field(default=2.0, gt=0, description="seconds between writes of the pull and push counts")


class Settings(FlagsOverEnvironment):
    model_config = SettingsConfigDict(env_prefix="DOCKYARD_", env_nested_delimiter="__", extra="forbid")

    http: HttpSettings = HttpSettings()
    storage: StorageSettings = StorageSettings()
    registry: RegistryOptions = RegistryOptions()
    auth: AuthSettings = AuthSettings()
    webhooks: WebhookSettings = WebhookSettings()
    metadata: MetadataSettings = MetadataSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from the YAML file, the environment and `overrides`, highest last.

    The environment beats the file, and `overrides` (command-line flags) beat both.
    """
    file_values = read_yaml(config_file) if config_file else {}
    try:
        from_env = Settings()  # environment only
        env_values = from_env.model_dump(exclude_unset=True)
        merged = merge(merge(file_values, env_values), overrides or {})
        settings = Settings.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(one_line(error)) from None
    if settings.storage.backend == "s3" and not settings.storage.s3.bucket:
        raise ConfigError("storage.s3.bucket is required when storage.backend is s3")
    if settings.storage.backend == "s3" and not settings.metadata.url:
        raise ConfigError("storage.backend s3 needs metadata.url: postgresql://... shared by the replicas (or sqlite:///path for one instance)")
    if settings.metadata.url:
        from .core.metadata import MetadataUrlError, parse_url

        try:
            parse_url(settings.metadata.url)
        except MetadataUrlError as error:
            raise ConfigError(str(error)) from None
    auth = settings.auth
    if auth.enabled and bool(auth.admin_user) != bool(auth.admin_password):
        raise ConfigError("auth.admin_user and auth.admin_password go together")
    if auth.token_key_file is not None and not auth.token_key_file.is_file():
        raise ConfigError(f"auth.token_key_file {auth.token_key_file} does not exist")
    return settings
