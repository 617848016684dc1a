"""`dockyard`: the command line of the Dockyard client, docker-style.

    dockyard [--store DIR] [--config DIR] [--insecure-registry HOST]... COMMAND [OPTIONS] ...

Commands: login, logout, search, pull, push (cli_registry.py); images, tag, rmi, inspect,
history, save, load (cli_images.py). `--store`, `--config` and `--insecure-registry` are
accepted before the command or after it.

This module only parses arguments and maps outcomes to exit statuses: 0 success, 1 an error
(one `Error: ...` line on stderr: the client's and the store's errors already name the image),
2 a usage error (argparse's message), 130 interrupted. It holds no command logic.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .cli_context import Context, UsageError, describe, user_errors

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
        help="local image store (default: $XDG_DATA_HOME/dockyard or ~/.local/share/dockyard)",
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

    def command(name: str, handler: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=common, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", "cli_registry:login_command", "Log in to a registry and save the credentials")
    login.add_argument("-u", "--username", help="user name")
    secret = login.add_mutually_exclusive_group()
    secret.add_argument("-p", "--password", help="password (insecure: prefer --password-stdin)")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.add_argument("server", nargs="?", metavar="REGISTRY", help="registry host[:port] (default: Docker Hub)")

    logout = command("logout", "cli_registry:logout_command", "Remove the saved credentials of a registry")
    logout.add_argument("server", nargs="?", metavar="REGISTRY", help="registry host[:port] (default: Docker Hub)")

    search = command("search", "cli_registry:search_command", "Search a registry for repositories")
    search.add_argument("--limit", type=_limit, default=25, metavar="N", help="at most N results (1-100, default 25)")
    search.add_argument("--no-trunc", action="store_true", help="do not truncate descriptions")
    search.add_argument("term", metavar="TERM", help="what to look for; HOST/TERM searches that registry")

    pull = command("pull", "cli_registry:pull_command", "Download an image from a registry")
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="platform to choose from a multi-platform image")
    pull.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    pull.add_argument("image", metavar="NAME[:TAG|@DIGEST]")

    push = command("push", "cli_registry:push_command", "Upload an image to a registry")
    push.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    push.add_argument("image", metavar="NAME[:TAG]")

    tag = command("tag", "cli_images:tag_command", "Give an image another name")
    tag.add_argument("source", metavar="SOURCE_IMAGE[:TAG]", help="a name or an image ID")
    tag.add_argument("target", metavar="TARGET_IMAGE[:TAG]")

    images = command("images", "cli_images:images_command", "List the images in the store")
    images.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    images.add_argument("--no-trunc", action="store_true", help="print full image IDs")
    images.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="list only this repository")

    rmi = command("rmi", "cli_images:rmi_command", "Remove images (untag a name; delete what nothing else uses)")
    rmi.add_argument("-f", "--force", action="store_true", help="remove an image ID even if it has names in several repositories")
    rmi.add_argument("images", nargs="+", metavar="IMAGE")

    inspect = command("inspect", "cli_images:inspect_command", "Show images' details as JSON")
    inspect.add_argument("images", nargs="+", metavar="IMAGE")

    history = command("history", "cli_images:history_command", "Show how an image's layers were made")
    history.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    history.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    history.add_argument("image", metavar="IMAGE")

    save = command("save", "cli_images:save_command", "Write images to a docker archive (tar)")
    save.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    save.add_argument("images", nargs="+", metavar="IMAGE")

    load = command("load", "cli_images:load_command", "Read images from a docker archive (tar)")
    load.add_argument("-i", "--input", metavar="FILE", help="read from FILE instead of standard input")
    load.add_argument("-q", "--quiet", action="store_true", help="accepted for docker compatibility")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dockyard")
    except PackageNotFoundError:
        return "unknown"


def _handler(spec: str) -> Handler:
    """`module:function` of this package, imported only now (so --help never loads the store)."""
    from importlib import import_module

    module_name, function = spec.split(":")
    return getattr(import_module(f".{module_name}", __package__ or "client"), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        return _handler(args.handler)(ctx)
    except UsageError as error:
        ctx.error(error)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`dockyard images | head`): stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as error:
        if not isinstance(error, (*user_errors(), OSError)):
            raise
        ctx.error(describe(error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
