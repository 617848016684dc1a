"""The rules of a container's configuration, as pure functions: Docker's merge of the create
request with the image config, HostConfig defaults and checks, restart-policy decisions, `ps`
status text and filters, and the network settings `inspect` shows. No I/O, no state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .errors import EngineError, InvalidParameter
from .health import merge_health_check
from .records import ZERO_TIME, Container
from .spec import merge_env

RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "LogConfig": {"Type": "json-file", "Config": {}},  # what clients expect; kept in engine.logs format
    "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False,
    "ReadonlyRootfs": False,
    "Privileged": False,
}


class NotFoundNetwork(EngineError):
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")


def check_restart_policy(host_config: dict[str, Any]) -> None:
    policy = host_config.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    retries = policy.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    if not isinstance(retries, int) or retries < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if name not in ("", "no") and host_config.get("AutoRemove"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")


def should_restart(record: Container) -> bool:
    """Docker's rules: `always` and `unless-stopped` unless a user stopped it; `on-failure[:N]`
    after a non-zero exit, at most N times (0: no bound)."""
    policy = record.HostConfig.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if record.manually_stopped or name == "no":
        return False
    if name == "on-failure":
        retries = policy.get("MaximumRetryCount") or 0
        return record.State.ExitCode != 0 and (retries == 0 or record.RestartCount < retries)
    return True


def console_size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    return None


def merge_config(body: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The container's config: what the create request says, the image's config beneath it
    (Docker's `merge`: Env by key, Cmd only when no Entrypoint was given, Labels and ports
    added; an Entrypoint of `[""]` means none at all)."""
    keys = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
            "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
            "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")  # fmt: skip
    config: dict[str, Any] = {key: body.get(key) for key in keys if key in body}
    for key in ("Hostname", "Domainname", "User", "WorkingDir"):
        config.setdefault(key, "")
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        config[key] = bool(config.get(key))
    config["Env"] = merge_env(list(image.get("Env") or []), list(config.get("Env") or []))
    if config.get("Entrypoint") == [""]:  # `--entrypoint ""`: explicitly none, not the image's
        config["Entrypoint"] = None
        if not config.get("Cmd"):
            config["Cmd"] = image.get("Cmd")
    elif not config.get("Entrypoint"):
        if not config.get("Cmd"):
            config["Cmd"] = image.get("Cmd")
        if config.get("Entrypoint") is None:
            config["Entrypoint"] = image.get("Entrypoint")
    if not config.get("User"):
        config["User"] = image.get("User") or ""
    if not config.get("WorkingDir"):
        config["WorkingDir"] = image.get("WorkingDir") or ""
    labels = dict(image.get("Labels") or {})
    labels.update(config.get("Labels") or {})
    config["Labels"] = labels
    if image.get("ExposedPorts") or config.get("ExposedPorts"):
        config["ExposedPorts"] = {**(image.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})}
    if image.get("Volumes") or config.get("Volumes"):
        config["Volumes"] = {**(image.get("Volumes") or {}), **(config.get("Volumes") or {})}
    if not config.get("StopSignal") and image.get("StopSignal"):
        config["StopSignal"] = image["StopSignal"]
    if image.get("OnBuild") and not config.get("OnBuild"):
        config["OnBuild"] = image["OnBuild"]
    check = merge_health_check(config.pop("Healthcheck", None), image.get("Healthcheck"))
    if check:
        config["Healthcheck"] = check
    return config


def network_settings(record: Container, networks: dict[str, Any]) -> dict[str, Any]:
    """`NetworkSettings` as `inspect` shows it; `networks`: the network records by ID."""
    sandbox = record.sandbox if record.State.Running else None
    endpoints = sandbox.endpoints if sandbox else {}
    shown: dict[str, Any] = {}
    mode = record.HostConfig.get("NetworkMode") or "default"
    attached = record.networks or ({mode: None} if mode in ("host", "none") else {})
    for name, config in attached.items():
        endpoint = endpoints.get(name)
        network_id = endpoint.network_id if endpoint else (config.NetworkID if config else "")
        if not network_id:
            network_id = next((n.Id for n in networks.values() if n.Name == name), "")
        shown[name] = {
            "IPAMConfig": config.IPAMConfig if config else None, "Links": config.Links if config else None,
            "Aliases": config.Aliases if config else None, "NetworkID": network_id,
            "EndpointID": endpoint.endpoint_id if endpoint else "", "Gateway": endpoint.gateway if endpoint else "",
            "IPAddress": endpoint.ip if endpoint else "", "IPPrefixLen": endpoint.prefix if endpoint else 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": endpoint.mac if endpoint else "", "DriverOpts": None,
        }  # fmt: skip
    ports: dict[str, Any] = {}
    if sandbox is not None:
        ports = {key if "/" in key else f"{key}/tcp": None for key in record.Config.get("ExposedPorts") or {}}
        ports.update(sandbox.ports)
    default = endpoints.get("bridge")
    return {
        "Bridge": "",
        "SandboxID": record.Id if sandbox else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": sandbox.netns if sandbox else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": default.endpoint_id if default else "",
        "Gateway": default.gateway if default else "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": default.ip if default else "",
        "IPPrefixLen": default.prefix if default else 0,
        "IPv6Gateway": "",
        "MacAddress": default.mac if default else "",
        "Networks": shown,
    }


def status_text(record: Container, now: datetime | None = None) -> str:
    """`ps`'s STATUS column: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created"."""
    from client.human import human_duration, parse_time

    now = now or datetime.now(timezone.utc)
    state = record.State
    if state.Running:
        started = parse_time(state.StartedAt)
        text = "Up " + (human_duration((now - started).total_seconds()) if started else "Less than a second")
        if state.Paused:
            return text + " (Paused)"
        health = (state.Health or {}).get("Status")
        return f"{text} (health: starting)" if health == "starting" else f"{text} ({health})" if health else text
    if state.Restarting:
        finished = parse_time(state.FinishedAt)
        since = human_duration((now - finished).total_seconds()) if finished else "Less than a second"
        return f"Restarting ({state.ExitCode}) {since} ago"
    if state.Status == "created":
        return "Created"
    if state.Status == "removing":
        return "Removal In Progress"
    finished = parse_time(state.FinishedAt)
    if finished is None or state.FinishedAt == ZERO_TIME:
        return f"Exited ({state.ExitCode})"
    return f"Exited ({state.ExitCode}) {human_duration((now - finished).total_seconds())} ago"


def matches_filters(record: Container, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "status" and record.State.Status not in values:
            return False
        if key == "name" and not any(value.lstrip("/") in record.name for value in values):
            return False
        if key == "id" and not any(record.Id.startswith(value) for value in values):
            return False
        if key == "label":
            labels = record.Config.get("Labels") or {}
            for value in values:
                name, equals, wanted = value.partition("=")
                if name not in labels or (equals and labels[name] != wanted):
                    return False
        if key == "health" and ((record.State.Health or {}).get("Status") or "none") not in values:
            return False
        if key == "exited" and (record.State.Status != "exited" or str(record.State.ExitCode) not in values):
            return False
        if key == "ancestor" and not any(value in (record.ImageRef, record.Image) or record.Image.split(":")[-1].startswith(value) for value in values):
            return False
    return True

