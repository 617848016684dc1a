"""The `dockyard` container commands, through the daemon: run, create, start, stop, kill,
restart, wait, rm, ps, logs, exec, attach, commit.

Each builds one Engine API request (the same bodies the docker CLI sends) with
`client.daemon.DaemonClient`, and prints what docker prints. Exit statuses are docker's: the
container's for run/exec/attach/wait, 125 when the daemon refuses a run, 126 and 127 when the
command cannot run or is not found.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..daemon import DaemonError
from ..daemon.api import start_error_exit_code
from ..port_specs import format_ports, port_settings
from .context import Context, UsageError
from .output import ago, ellipsis, table
from .streams import relay, terminal_size

COMMAND_WIDTH = 20


def _env(args: Any) -> list[str]:
    env = []
    for path in args.env_file or []:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as error:
            raise UsageError(f"cannot read the env file {path}: {error.strerror}") from None
        env += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for item in args.env or []:
        if "=" not in item:
            import os

            if item in os.environ:
                env.append(f"{item}={os.environ[item]}")
            continue
        env.append(item)
    return env


def _labels(items: list[str] | None) -> dict[str, str]:
    labels = {}
    for item in items or []:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


def parse_bytes(text: str) -> int:
    """`512k`, `256m`, `1g`, `1024` (bytes), as docker's --memory takes them."""
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    value = text.strip().lower()
    unit = value[-1] if value and value[-1] in units else "b"
    number = value[:-1] if value and value[-1] in units else value
    try:
        amount = float(number)
    except ValueError:
        raise UsageError(f"invalid size: {text!r}") from None
    if amount < 0:
        raise UsageError(f"invalid size: {text!r}")
    return int(amount * units[unit])


def restart_policy(text: str | None) -> dict[str, Any]:
    if not text:
        return {"Name": "no", "MaximumRetryCount": 0}
    name, _, count = text.partition(":")
    if count and not count.isdigit():
        raise UsageError(f"invalid restart policy {text!r}: the retry count must be a number")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_duration(text: str) -> int:
    """`1m30s`, `500ms`, `2h`, `10s` (Go's durations, as docker takes them) in nanoseconds."""
    import re

    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise UsageError(f"invalid duration {text!r}: e.g. 30s, 1m30s, 500ms")
    return int(sum(float(number) * units[unit] for number, unit in parts))


def health_check(args: Any) -> dict[str, Any] | None:
    if args.no_healthcheck:
        if args.health_cmd:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    check: dict[str, Any] = {}
    if args.health_cmd:
        check["Test"] = ["CMD-SHELL", args.health_cmd]
    for key, value in (("Interval", args.health_interval), ("Timeout", args.health_timeout), ("StartPeriod", args.health_start_period)):
        if value:
            check[key] = parse_duration(value)
    if args.health_retries is not None:
        if args.health_retries < 0:
            raise UsageError("--health-retries cannot be negative")
        check["Retries"] = args.health_retries
    return check or None


def parse_mount(spec: str) -> dict[str, Any]:
    """`--mount type=volume,source=data,target=/data,readonly` as the API's Mount object."""
    mount: dict[str, Any] = {"Type": "volume"}
    for field in filter(None, spec.split(",")):
        key, equals, value = field.partition("=")
        key = key.strip().lower()
        if key in ("type",):
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "destination", "dst"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = not equals or value.lower() in ("1", "true")
        elif key == "volume-nocopy":
            mount.setdefault("VolumeOptions", {})["NoCopy"] = not equals or value.lower() in ("1", "true")
        elif key == "tmpfs-size":
            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            try:
                mount.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
            except ValueError:
                raise UsageError(f"invalid tmpfs-mode {value!r} in --mount {spec!r}: an octal mode") from None
        elif key == "bind-propagation":
            mount.setdefault("BindOptions", {})["Propagation"] = value
        else:
            raise UsageError(f"unexpected key {key!r} in --mount {spec!r}")
    if not mount.get("Target"):
        raise UsageError(f"target is required in --mount {spec!r}")
    return mount


def create_body(args: Any) -> dict[str, Any]:
    """The `POST /containers/create` body for `run`/`create` options."""
    tty, interactive = bool(args.tty), bool(args.interactive)
    attach = not getattr(args, "detach", False)
    exposed, bindings = port_settings(args.publish, args.expose)
    network = args.network or "default"
    body: dict[str, Any] = {
        "Image": args.image,
        "Cmd": list(args.command) or None,
        "Env": _env(args),
        "Tty": tty,
        "OpenStdin": interactive,
        "StdinOnce": interactive and attach,
        "AttachStdin": interactive and attach,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Labels": _labels(args.label),
        "WorkingDir": args.workdir or "",
        "User": args.user or "",
        "Hostname": args.hostname or "",
        "ExposedPorts": exposed or None,
        "Volumes": {path: {} for path in args.volume or [] if ":" not in path} or None,
        "HostConfig": {
            "Binds": [spec for spec in args.volume or [] if ":" in spec] or None,
            "Mounts": [parse_mount(spec) for spec in args.mount or []] or None,
            "Tmpfs": dict(spec.partition(":")[::2] for spec in args.tmpfs or []) or None,
            "NetworkMode": network,
            "PortBindings": bindings or None,
            "PublishAllPorts": bool(args.publish_all),
            "ExtraHosts": list(args.add_host or []) or None,
            "AutoRemove": bool(args.rm),
            "ReadonlyRootfs": bool(args.read_only),
            "RestartPolicy": restart_policy(args.restart),
            "Memory": parse_bytes(args.memory) if args.memory else 0,
            "NanoCpus": int(round(args.cpus * 1e9)) if args.cpus else 0,
            "PidsLimit": args.pids_limit or 0,
        },
    }
    check = health_check(args)
    if check:
        body["Healthcheck"] = check
    if args.network_alias or args.ip:
        endpoint: dict[str, Any] = {"Aliases": list(args.network_alias or []) or None}
        if args.ip:
            endpoint["IPAMConfig"] = {"IPv4Address": args.ip}
        body["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}
    if args.entrypoint is not None:
        body["Entrypoint"] = [args.entrypoint] if args.entrypoint else [""]
    if tty:
        body["HostConfig"]["ConsoleSize"] = list(terminal_size())
    return body


def _pull_for_run(ctx: Context, image: str) -> None:
    print(f"Unable to find image '{image}' locally", file=ctx.err, flush=True)
    from .engine_images import print_progress

    print_progress(ctx, ctx.daemon().pull(ctx.daemon_image_name(image), credentials=ctx.registry_auth(image)))


def _create(ctx: Context, args: Any) -> str:
    api = ctx.daemon()
    body = create_body(args)
    try:
        return api.create_container(body, args.name)["Id"]
    except DaemonError as error:
        if error.status != 404 or "No such image" not in error.message:
            raise
    _pull_for_run(ctx, args.image)
    return api.create_container(body, args.name)["Id"]


def run_command(ctx: Context) -> int:
    args = ctx.args
    api = ctx.daemon()
    try:
        container_id = _create(ctx, args)
    except DaemonError as error:
        ctx.error(error.message)
        return 125
    sock = None
    waiter = None
    if not args.detach:
        sock = api.attach_socket(container_id, stdin=args.interactive, stdout=True, stderr=True)
        waiter = api.wait_response(container_id, "removed" if args.rm else "next-exit")
    try:
        api.start(container_id)
    except DaemonError as error:
        if sock is not None:
            sock.close()
        ctx.error(error.message)
        return start_error_exit_code(error.message)
    if args.detach:
        ctx.print(container_id)
        return 0
    if args.tty:
        try:
            api.resize(container_id, *terminal_size())
        except DaemonError:
            pass
    relay(sock, tty=args.tty, stdin=args.interactive, resize=lambda h, w: api.resize(container_id, h, w))
    assert waiter is not None
    result = waiter.json() or {}
    return int(result.get("StatusCode", 0))


def create_command(ctx: Context) -> int:
    ctx.print(_create(ctx, ctx.args))
    return 0


def _each(ctx: Context, names: list[str], action: Any) -> int:
    """Each container's name once `action` succeeded for it, as docker prints them."""

    def act(name: str) -> None:
        action(name)
        ctx.print(name)

    return ctx.each(names, act)


def start_command(ctx: Context) -> int:
    api = ctx.daemon()
    args = ctx.args
    if args.attach:
        if len(args.containers) != 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        name = args.containers[0]
        config = api.inspect_container(name)["Config"]
        sock = api.attach_socket(name, stdin=args.interactive and config.get("OpenStdin"), stdout=True, stderr=True)
        waiter = api.wait_response(name, "next-exit")
        api.start(name)
        relay(sock, tty=bool(config.get("Tty")), stdin=bool(args.interactive and config.get("OpenStdin")))
        return int((waiter.json() or {}).get("StatusCode", 0))
    return _each(ctx, args.containers, api.start)


def stop_command(ctx: Context) -> int:
    api = ctx.daemon()
    return _each(ctx, ctx.args.containers, lambda name: api.stop(name, ctx.args.time, ctx.args.signal))


def kill_command(ctx: Context) -> int:
    api = ctx.daemon()
    return _each(ctx, ctx.args.containers, lambda name: api.kill(name, ctx.args.signal))


def restart_command(ctx: Context) -> int:
    api = ctx.daemon()
    return _each(ctx, ctx.args.containers, lambda name: api.restart(name, ctx.args.time))


def rm_command(ctx: Context) -> int:
    api = ctx.daemon()
    args = ctx.args
    return _each(ctx, args.containers, lambda name: api.remove_container(name, force=args.force, volumes=args.volumes))


def wait_command(ctx: Context) -> int:
    api = ctx.daemon()
    return ctx.each(ctx.args.containers, lambda name: ctx.print(api.wait(name)["StatusCode"]))


def _filters(items: list[str] | None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"bad format of filter (expected name=value): {item}")
        found.setdefault(key, []).append(value)
    return found


def ps_command(ctx: Context) -> int:
    args = ctx.args
    containers = ctx.daemon().containers(all=args.all, filters=_filters(args.filter))
    if args.last is not None:
        containers = containers[: args.last]
    if args.quiet:
        for container in containers:
            ctx.print(container["Id"] if args.no_trunc else container["Id"][:12])
        return 0
    now = datetime.now(timezone.utc)
    rows = []
    for container in containers:
        command = container.get("Command") or ""
        shown = json.dumps(command if args.no_trunc else ellipsis(command, COMMAND_WIDTH), ensure_ascii=False)
        created = datetime.fromtimestamp(container.get("Created") or 0, timezone.utc).isoformat()
        rows.append(
            (
                container["Id"] if args.no_trunc else container["Id"][:12],
                container.get("Image") or "",
                shown,
                ago(created, now),
                container.get("Status") or "",
                format_ports(container.get("Ports") or []),
                ",".join(name.lstrip("/") for name in container.get("Names") or []),
            )
        )
    ctx.print(table(("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"), rows))
    return 0


def logs_command(ctx: Context) -> int:
    from ..daemon import demux

    args = ctx.args
    api = ctx.daemon()
    tty = bool(api.inspect_container(args.container)["Config"].get("Tty"))
    response = api.logs(args.container, follow=args.follow, tail=args.tail, timestamps=args.timestamps)
    if tty:
        for chunk in response.chunks():
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return 0
    for stream, data in demux(response.chunks()):
        target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
        target.write(data)
        target.flush()
    return 0


def exec_command(ctx: Context) -> int:
    args = ctx.args
    api = ctx.daemon()
    config: dict[str, Any] = {
        "Cmd": [args.command_name, *args.command],
        "AttachStdin": bool(args.interactive) and not args.detach,
        "AttachStdout": not args.detach,
        "AttachStderr": not args.detach,
        "Tty": bool(args.tty),
        "Env": _env(args),
        "WorkingDir": args.workdir or "",
        "User": args.user or "",
        "Detach": bool(args.detach),
    }
    if args.tty:
        config["ConsoleSize"] = list(terminal_size())
    exec_id = api.exec_create(args.container, config)["Id"]
    if args.detach:
        api.exec_start_detached(exec_id)
        return 0
    sock = api.exec_start_socket(exec_id, tty=bool(args.tty), console_size=terminal_size() if args.tty else None)
    relay(sock, tty=bool(args.tty), stdin=bool(args.interactive), resize=lambda h, w: api.exec_resize(exec_id, h, w))
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 0


def attach_command(ctx: Context) -> int:
    args = ctx.args
    api = ctx.daemon()
    info = api.inspect_container(args.container)
    if not info["State"]["Running"]:
        raise UsageError("You cannot attach to a stopped container, start it first")
    config = info["Config"]
    use_stdin = bool(config.get("OpenStdin")) and not args.no_stdin
    sock = api.attach_socket(args.container, stdin=use_stdin, stdout=True, stderr=True)
    relay(sock, tty=bool(config.get("Tty")), stdin=use_stdin, resize=lambda h, w: api.resize(args.container, h, w))
    return int(api.wait(args.container).get("StatusCode", 0))


def commit_command(ctx: Context) -> int:
    args = ctx.args
    repository, tag = ctx.repository_and_tag(args.repository)
    result = ctx.daemon().commit(
        args.container, repository=repository, tag=tag, author=args.author or "", message=args.message or "",
        changes=args.change, pause=args.pause,
    )  # fmt: skip
    ctx.print(result["Id"])
    return 0


def volume_command(ctx: Context) -> int:
    args = ctx.args
    api = ctx.daemon()
    if args.volume_command == "create":
        ctx.print(api.create_volume(args.name, _labels(args.label))["Name"])
        return 0
    if args.volume_command == "ls":
        volumes = api.volumes()
        if args.quiet:
            for volume in volumes:
                ctx.print(volume["Name"])
        else:
            ctx.print(table(("DRIVER", "VOLUME NAME"), [(volume["Driver"], volume["Name"]) for volume in volumes]))
        return 0
    if args.volume_command == "inspect":
        documents: list[dict[str, Any]] = []
        status = ctx.each(args.names, lambda name: documents.append(api.inspect_volume(name)))
        ctx.print(json.dumps(documents, indent=4))
        return status
    if args.volume_command == "rm":
        return _each(ctx, args.names, lambda name: api.remove_volume(name, force=args.force))
    result = api.prune_volumes(all=args.all)
    for name in result.get("VolumesDeleted") or []:
        ctx.print(name)
    from .output import human_size

    ctx.print(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")
    return 0
