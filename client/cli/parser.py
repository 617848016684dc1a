"""Every `dockyard` command: its arguments, and the handler that runs it on a local store
(`--store`) or through the daemon (the default)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from . import build, containers, engine_images, images, networks, registry
from .context import Context

Handler = Callable[[Context], int]


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}: expected a number") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"limit {value} is outside the range of [1, 100]")
    return value


def _common_options(*, top_level: bool) -> argparse.ArgumentParser:
    """Options every command takes; SUPPRESS so a command's own never overwrites the global one."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--store",
        metavar="DIR",
        type=Path,
        default=argparse.SUPPRESS,
        help="work on this local image store directly, without a daemon (image commands only)",
    )
    options.add_argument(
        "-H",
        "--host",
        metavar="unix:///PATH",
        default=argparse.SUPPRESS,
        help="the daemon's socket (default: $DOCKYARD_HOST or unix:///run/dockyard.sock)",
    )
    options.add_argument(
        "--config",
        metavar="DIR",
        type=Path,
        default=argparse.SUPPRESS,
        help="directory of the credentials file config.json (default: $DOCKER_CONFIG or ~/.docker)",
    )
    options.add_argument(
        "--insecure-registry",
        metavar="HOST",
        action="append",
        dest="global_insecure" if top_level else "insecure",
        default=argparse.SUPPRESS,
        help="speak plain HTTP to this registry (host or host:port; repeatable; "
        "localhost and 127.0.0.1 always are)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard",
        description="Pull, push, search and keep container images: the Dockyard client.",
        parents=[_common_options(top_level=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common_options(top_level=False)]

    def command(name: str, handler: Handler, help: str, *, daemon: Handler | None = None) -> argparse.ArgumentParser:
        """`handler` runs on a store given with --store; `daemon` (default) through the daemon."""
        sub = commands.add_parser(name, parents=common, help=help, description=help)
        sub.set_defaults(handler=handler, daemon_handler=daemon)
        return sub

    def engine_command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        return command(name, handler, help, daemon=handler)

    login = command("login", registry.login_command, "Log in to a registry and save the credentials")
    login.add_argument("-u", "--username", help="user name")
    secret = login.add_mutually_exclusive_group()
    secret.add_argument("-p", "--password", help="password (insecure: prefer --password-stdin)")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.add_argument("server", nargs="?", metavar="REGISTRY", help="registry host[:port] (default: Docker Hub)")

    logout = command("logout", registry.logout_command, "Remove the saved credentials of a registry")
    logout.add_argument("server", nargs="?", metavar="REGISTRY", help="registry host[:port] (default: Docker Hub)")

    search = command("search", registry.search_command, "Search a registry for repositories")
    search.add_argument("--limit", type=_limit, default=25, metavar="N", help="at most N results (1-100, default 25)")
    search.add_argument("--no-trunc", action="store_true", help="do not truncate descriptions")
    search.add_argument("term", metavar="TERM", help="what to look for; HOST/TERM searches that registry")

    pull = command("pull", registry.pull_command, "Download an image from a registry", daemon=engine_images.pull_command)
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="platform to choose from a multi-platform image")
    pull.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    pull.add_argument("image", metavar="NAME[:TAG|@DIGEST]")

    push = command("push", registry.push_command, "Upload an image to a registry", daemon=engine_images.push_command)
    push.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    push.add_argument("image", metavar="NAME[:TAG]")

    tag = command("tag", images.tag_command, daemon=engine_images.tag_command, help="Give an image another name")
    tag.add_argument("source", metavar="SOURCE_IMAGE[:TAG]", help="a name or an image ID")
    tag.add_argument("target", metavar="TARGET_IMAGE[:TAG]")

    listing = command("images", images.images_command, daemon=engine_images.images_command, help="List the images in the store")
    listing.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    listing.add_argument("--no-trunc", action="store_true", help="print full image IDs")
    listing.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="list only this repository")

    rmi = command("rmi", images.rmi_command, daemon=engine_images.rmi_command, help="Remove images (untag a name; delete what nothing else uses)")
    rmi.add_argument("-f", "--force", action="store_true", help="remove an image ID even if it has names in several repositories")
    rmi.add_argument("images", nargs="+", metavar="IMAGE")

    inspect = command("inspect", images.inspect_command, daemon=engine_images.inspect_command, help="Show images' details as JSON")
    inspect.add_argument("images", nargs="+", metavar="IMAGE")

    history = command("history", images.history_command, daemon=engine_images.history_command, help="Show how an image's layers were made")
    history.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    history.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    history.add_argument("image", metavar="IMAGE")

    save = command("save", images.save_command, daemon=engine_images.save_command, help="Write images to a docker archive (tar)")
    save.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    save.add_argument("images", nargs="+", metavar="IMAGE")

    load = command("load", images.load_command, daemon=engine_images.load_command, help="Read images from a docker archive (tar)")
    load.add_argument("-i", "--input", metavar="FILE", help="read from FILE instead of standard input")
    load.add_argument("-q", "--quiet", action="store_true", help="accepted for docker compatibility")
    _container_commands(engine_command)
    return parser


def _run_options(sub: argparse.ArgumentParser, *, run: bool) -> None:
    sub.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and attached")
    sub.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    if run:
        sub.add_argument("-d", "--detach", action="store_true", help="run in the background and print the container ID")
    sub.add_argument("--rm", action="store_true", help="remove the container when it exits")
    sub.add_argument("--name", help="the container's name")
    sub.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="set an environment variable")
    sub.add_argument("--env-file", action="append", metavar="FILE", help="read environment variables from FILE")
    sub.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    sub.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user name or UID (and group)")
    sub.add_argument("--entrypoint", help="override the image's entrypoint")
    sub.add_argument("--hostname", help="the container's host name")
    sub.add_argument("-l", "--label", action="append", metavar="KEY=VALUE", help="set a label")
    sub.add_argument("-v", "--volume", action="append", metavar="[HOST|NAME:]CONTAINER[:ro]",
                     help="bind-mount a host path, mount a named volume, or (a path alone) an anonymous volume")
    sub.add_argument("--mount", action="append", metavar="type=bind|volume|tmpfs,...", help="a mount, docker's --mount syntax")
    sub.add_argument("--tmpfs", action="append", metavar="PATH[:OPTIONS]", help="a tmpfs at PATH (e.g. /run:size=64m)")
    sub.add_argument("--network", metavar="NETWORK", help="bridge (the default), host, none, or a network's name")
    sub.add_argument("--network-alias", action="append", metavar="ALIAS", help="another name on a user-defined network")
    sub.add_argument("--ip", metavar="ADDRESS", help="a fixed IPv4 address on the (user-defined) network")
    sub.add_argument("-p", "--publish", action="append", metavar="[IP:][HOST:]PORT[/PROTO]", help="publish a container port")
    sub.add_argument("-P", "--publish-all", action="store_true", help="publish every exposed port on a random host port")
    sub.add_argument("--expose", action="append", metavar="PORT[/PROTO]", help="expose a port without publishing it")
    sub.add_argument("--add-host", action="append", metavar="HOST:IP", help="an extra line in /etc/hosts")
    sub.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    sub.add_argument("--restart", metavar="POLICY", help="no, always, on-failure[:N] or unless-stopped")
    sub.add_argument("-m", "--memory", metavar="BYTES", help="memory limit (e.g. 256m)")
    sub.add_argument("--cpus", type=float, metavar="N", help="CPUs the container may use (e.g. 1.5)")
    sub.add_argument("--pids-limit", type=int, metavar="N", help="at most N processes")
    sub.add_argument("--health-cmd", metavar="COMMAND", help="a shell command whose exit status says whether it is healthy")
    sub.add_argument("--health-interval", metavar="DURATION", help="time between checks (e.g. 30s)")
    sub.add_argument("--health-timeout", metavar="DURATION", help="time a check may take (e.g. 30s)")
    sub.add_argument("--health-start-period", metavar="DURATION", help="time during which failures do not count")
    sub.add_argument("--health-retries", type=int, metavar="N", help="failures in a row that make it unhealthy")
    sub.add_argument("--no-healthcheck", action="store_true", help="turn off the image's HEALTHCHECK")
    sub.add_argument("image", metavar="IMAGE")
    sub.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND ...")


def _container_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    run = command("run", containers.run_command, "Create and start a container, and attach to it")
    _run_options(run, run=True)
    create = command("create", containers.create_command, "Create a container")
    _run_options(create, run=False)
    start = command("start", containers.start_command, "Start stopped containers")
    start.add_argument("-a", "--attach", action="store_true", help="attach stdout and stderr")
    start.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    start.add_argument("containers", nargs="+", metavar="CONTAINER")
    for name, help_text in (("stop", "Stop running containers (SIGTERM, then SIGKILL)"), ("restart", "Restart containers")):
        sub = command(name, getattr(containers, f"{name}_command"), help_text)
        sub.add_argument("-t", "--time", type=int, metavar="SECONDS", help="seconds to wait before killing")
        if name == "stop":
            sub.add_argument("-s", "--signal", help="signal to stop with (default: the image's StopSignal, else SIGTERM)")
        sub.add_argument("containers", nargs="+", metavar="CONTAINER")
    kill = command("kill", containers.kill_command, "Send a signal to running containers")
    kill.add_argument("-s", "--signal", help="signal to send (default KILL)")
    kill.add_argument("containers", nargs="+", metavar="CONTAINER")
    wait = command("wait", containers.wait_command, "Wait for containers to stop; print their exit codes")
    wait.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm = command("rm", containers.rm_command, "Remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    rm.add_argument("-v", "--volumes", action="store_true", help="also remove its anonymous volumes")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    ps = command("ps", containers.ps_command, "List containers")
    ps.add_argument("-a", "--all", action="store_true", help="all containers, not only running ones")
    ps.add_argument("-q", "--quiet", action="store_true", help="print only container IDs")
    ps.add_argument("-n", "--last", type=int, metavar="N", help="the N most recently created")
    ps.add_argument("--no-trunc", action="store_true", help="do not truncate")
    ps.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE", help="status=, name=, id=, label=, exited=, ancestor=")
    logs = command("logs", containers.logs_command, "Show a container's output")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    logs.add_argument("-n", "--tail", default="all", metavar="N", help="only the last N lines")
    logs.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with a timestamp")
    logs.add_argument("container", metavar="CONTAINER")
    exec_ = command("exec", containers.exec_command, "Run a command in a running container")
    exec_.add_argument("-i", "--interactive", action="store_true")
    exec_.add_argument("-t", "--tty", action="store_true")
    exec_.add_argument("-d", "--detach", action="store_true")
    exec_.add_argument("-u", "--user", metavar="USER[:GROUP]")
    exec_.add_argument("-w", "--workdir", metavar="DIR")
    exec_.add_argument("-e", "--env", action="append", metavar="KEY=VALUE")
    exec_.add_argument("--env-file", action="append", metavar="FILE")
    exec_.add_argument("container", metavar="CONTAINER")
    exec_.add_argument("command_name", metavar="COMMAND")
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="ARG")
    attach = command("attach", containers.attach_command, "Attach to a running container's streams")
    attach.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    attach.add_argument("container", metavar="CONTAINER")
    commit = command("commit", containers.commit_command, "Save a container's changes as a new image")
    commit.add_argument("-a", "--author", help="author, e.g. 'Jane <jane@example.com>'")
    commit.add_argument("-m", "--message", help="commit message")
    commit.add_argument("-c", "--change", action="append", metavar="INSTRUCTION", help="apply a Dockerfile instruction")
    commit.add_argument("-p", "--pause", action=argparse.BooleanOptionalAction, default=True, help="pause while committing")
    commit.add_argument("container", metavar="CONTAINER")
    commit.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    volume = command("volume", containers.volume_command, "Manage named volumes")
    volume_commands = volume.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    volume_create = volume_commands.add_parser("create", help="create a volume")
    volume_create.add_argument("name", nargs="?", metavar="NAME")
    volume_create.add_argument("--label", action="append", metavar="KEY=VALUE")
    volume_ls = volume_commands.add_parser("ls", help="list volumes")
    volume_ls.add_argument("-q", "--quiet", action="store_true", help="print only names")
    volume_inspect = volume_commands.add_parser("inspect", help="show volumes as JSON")
    volume_inspect.add_argument("names", nargs="+", metavar="NAME")
    volume_rm = volume_commands.add_parser("rm", help="remove volumes no container uses")
    volume_rm.add_argument("-f", "--force", action="store_true")
    volume_rm.add_argument("names", nargs="+", metavar="NAME")
    volume_prune = volume_commands.add_parser("prune", help="remove unused volumes")
    volume_prune.add_argument("-a", "--all", action="store_true", help="named volumes too, not only anonymous ones")
    volume_prune.add_argument("-f", "--force", action="store_true", help="accepted for docker compatibility")
    network = command("network", networks.network_command, "Manage networks")
    network_commands = network.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    network_create = network_commands.add_parser("create", help="create a network")
    network_create.add_argument("-d", "--driver", default="bridge")
    network_create.add_argument("--subnet", metavar="CIDR")
    network_create.add_argument("--gateway", metavar="ADDRESS")
    network_create.add_argument("--ip-range", metavar="CIDR")
    network_create.add_argument("--internal", action="store_true", help="no route out of the network")
    network_create.add_argument("--attachable", action="store_true")
    network_create.add_argument("--label", action="append", metavar="KEY=VALUE")
    network_create.add_argument("-o", "--opt", action="append", metavar="KEY=VALUE", help="driver options")
    network_create.add_argument("name", metavar="NAME")
    network_ls = network_commands.add_parser("ls", help="list networks")
    network_ls.add_argument("-q", "--quiet", action="store_true")
    network_ls.add_argument("--no-trunc", action="store_true")
    network_ls.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE", help="name=, id=, driver=, label=, type=")
    network_inspect = network_commands.add_parser("inspect", help="show networks as JSON")
    network_inspect.add_argument("names", nargs="+", metavar="NETWORK")
    network_rm = network_commands.add_parser("rm", help="remove networks")
    network_rm.add_argument("names", nargs="+", metavar="NETWORK")
    network_connect = network_commands.add_parser("connect", help="connect a container to a network")
    network_connect.add_argument("--alias", action="append", metavar="ALIAS")
    network_connect.add_argument("--ip", metavar="ADDRESS")
    network_connect.add_argument("network", metavar="NETWORK")
    network_connect.add_argument("container", metavar="CONTAINER")
    network_disconnect = network_commands.add_parser("disconnect", help="disconnect a container from a network")
    network_disconnect.add_argument("-f", "--force", action="store_true")
    network_disconnect.add_argument("network", metavar="NETWORK")
    network_disconnect.add_argument("container", metavar="CONTAINER")
    network_prune = network_commands.add_parser("prune", help="remove networks no container uses")
    network_prune.add_argument("-f", "--force", action="store_true", help="accepted for docker compatibility")
    port = command("port", networks.port_command, "Show a container's published ports")
    port.add_argument("container", metavar="CONTAINER")
    port.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    builder = command("build", build.build_command, "Build an image from a Dockerfile")
    builder.add_argument("-t", "--tag", action="append", metavar="NAME[:TAG]", help="name the image (repeatable)")
    builder.add_argument("-f", "--file", metavar="FILE", help="the Dockerfile (default PATH/Dockerfile; - for stdin)")
    builder.add_argument("--build-arg", action="append", metavar="KEY=VALUE", help="set a build-time variable")
    builder.add_argument("--label", action="append", metavar="KEY=VALUE", help="set a label on the image")
    builder.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    builder.add_argument("--pull", action="store_true", help="always pull the base images")
    builder.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    builder.add_argument("--target", metavar="STAGE", help="build this stage of a multi-stage Dockerfile")
    builder.add_argument("--iidfile", metavar="FILE", help="write the image ID to FILE")
    builder.add_argument("--rm", action=argparse.BooleanOptionalAction, default=True, help="remove intermediate containers after a successful build")
    builder.add_argument("--force-rm", action="store_true", help="always remove intermediate containers")
    builder.add_argument("path", metavar="PATH|-")
    import_ = command("import", engine_images.import_command, "Create an image from a root filesystem tar")
    import_.add_argument("-m", "--message", help="commit message")
    import_.add_argument("-c", "--change", action="append", metavar="INSTRUCTION")
    import_.add_argument("file", metavar="FILE|-")
    import_.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dockyard")
    except PackageNotFoundError:
        return "unknown"


