"""Dockerfile instructions applied to an image's run config: `commit --change` (and, later,
the non-layer instructions of `build`). Pure functions of a config dict.

Supported, as `docker commit -c` supports them: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME, WORKDIR. CMD and ENTRYPOINT take the JSON form or the shell form
(`/bin/sh -c "..."`); ENV and LABEL take `k=v ...` or the legacy `k v`.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from .errors import InvalidParameter

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _command(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
    return ["/bin/sh", "-c", stripped]


def _pairs(instruction: str, text: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise InvalidParameter(f"{instruction} {text}: {error}") from None
    if words and "=" not in words[0]:
        key, _, value = text.strip().partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise InvalidParameter(f"{instruction} names must be key=value, got {word!r}")
        pairs.append((key, value))
    return pairs


def apply_change(config: dict[str, Any], line: str) -> dict[str, Any]:
    """`config` with one instruction applied (a new dict)."""
    config = dict(config)
    keyword, _, rest = line.strip().partition(" ")
    instruction = keyword.upper()
    rest = rest.strip()
    if instruction not in ALLOWED:
        raise InvalidParameter(f"{keyword} is not a valid change command")
    if instruction == "CMD":
        config["Cmd"] = _command(rest)
    elif instruction == "ENTRYPOINT":
        config["Entrypoint"] = _command(rest)
        config.setdefault("Cmd", None)
    elif instruction == "ENV":
        env = list(config.get("Env") or [])
        for key, value in _pairs(instruction, rest):
            env = [entry for entry in env if entry.partition("=")[0] != key] + [f"{key}={value}"]
        config["Env"] = env
    elif instruction == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(_pairs(instruction, rest))
        config["Labels"] = labels
    elif instruction == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for port in rest.split():
            ports[port if "/" in port else f"{port}/tcp"] = {}
        config["ExposedPorts"] = ports
    elif instruction == "VOLUME":
        volumes = dict(config.get("Volumes") or {})
        for path in _command(rest) if rest.startswith("[") else rest.split():
            volumes[path] = {}
        config["Volumes"] = volumes
    elif instruction == "ONBUILD":
        config["OnBuild"] = [*(config.get("OnBuild") or []), rest]
    elif instruction == "STOPSIGNAL":
        config["StopSignal"] = rest
    elif instruction == "USER":
        config["User"] = rest
    elif instruction == "WORKDIR":
        config["WorkingDir"] = rest
    return config
