"""`dockyardd` settings: defaults < YAML file (`--config`) < `DOCKYARD_*` environment < flags.

The defaults run a daemon on `unix:///run/dockyard.sock` with everything under
`/var/lib/dockyard`: the image store (`images/`, the `client/store` format, so
`dockyard --store /var/lib/dockyard/images ...` reads it without a daemon), the containers
(`containers/<id>/`), runc's state (`runc/`) and the lock (`dockyardd.lock`).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from ocispec.settings_files import (
    ConfigError,
    FlagsOverEnvironment,
    merge,
    one_line,
    read_yaml,
)

__all__ = ["ConfigError", "EngineSettings", "load_settings"]

DEFAULT_HOST = "unix:///run/dockyard.sock"


class EngineSettings(FlagsOverEnvironment):
    model_config = SettingsConfigDict(env_prefix="DOCKYARD_", env_nested_delimiter="__", extra="ignore")

    host: str = Field(default=DEFAULT_HOST, description="unix:///PATH of the API socket")
    data_root: Path = Field(default=Path("/var/lib/dockyard"))
    runtime: str = Field(default="runc", description="the OCI runtime binary (runc)")
    on_shutdown: Literal["keep", "stop"] = Field(
        default="keep", description="what SIGTERM does to running containers: keep them running (they are "
        "re-adopted at the next start) or stop them"
    )
    stop_timeout: int = Field(default=10, ge=0, description="seconds between SIGTERM and SIGKILL on stop")
    insecure_registries: list[str] = Field(default_factory=list)
    socket_group: str | None = Field(default=None, description="group that owns the socket (mode 0660)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bridge_name: str = Field(default="dockyard0", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$",
                             description="the Linux bridge of the default `bridge` network")  # fmt: skip
    bridge_subnet: IPv4Network = Field(default=IPv4Network("172.30.0.0/16"), description="the default bridge's subnet")
    ip_masquerade: bool = Field(default=True, description="outbound NAT for bridge networks (iptables), as dockerd's --ip-masq")
    network_pool: IPv4Network = Field(
        default=IPv4Network("172.31.0.0/16"), description="where user-defined networks without a subnet get theirs (/24 each)"
    )

    @field_validator("host")
    @classmethod
    def _unix(cls, value: str) -> str:
        if not value.startswith("unix://") or len(value) <= len("unix://"):
            raise ValueError(f"host must be unix:///PATH, got {value!r}")
        return value

    @property
    def socket_path(self) -> Path:
        return Path(self.host[len("unix://") :])


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> EngineSettings:
    file_values = read_yaml(config_file) if config_file else {}
    try:
        env_values = EngineSettings().model_dump(exclude_unset=True)
        return EngineSettings.model_validate(merge(merge(file_values, env_values), overrides or {}))
    except ValidationError as error:
        raise ConfigError(one_line(error)) from None
