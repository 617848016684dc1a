"""`dockyard`: the command line of the Dockyard client, docker-style.

    dockyard [--store DIR] [--config DIR] [--insecure-registry HOST]... COMMAND [OPTIONS] ...

Commands talk to the Dockyard daemon (`dockyardd`) at `-H/--host`, `$DOCKYARD_HOST` or
unix:///run/dockyard.sock, as docker's CLI talks to dockerd: containers (run, create, start,
stop, kill, restart, wait, rm, ps, logs, exec, attach, commit, volume: `containers`), networks
(`networks`), images (pull, push, images, tag, rmi, inspect, history, save, load, import:
`engine_images`), and build (`build`).
With `--store DIR` the image commands work on that store directly, with no daemon
(`images`, `registry`), for scripts. login, logout and search never need the daemon.
`--store`, `--host`, `--config` and `--insecure-registry` are accepted before the command or after it.

`parser` declares every command with its handlers; this module maps outcomes to exit statuses: 0 success, 1 an error
(one `Error: ...` line on stderr: the client's and the store's errors already name the image),
2 a usage error (argparse's message), 130 interrupted. It holds no command logic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from .context import Context, UsageError, describe, user_errors
from .parser import build_parser

Handler = Callable[[Context], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    handler = args.daemon_handler if ctx.uses_daemon and args.daemon_handler else args.handler
    if not ctx.uses_daemon and args.daemon_handler == args.handler:
        ctx.error(f"{args.command} needs the daemon: drop --store")
        return 2
    try:
        return handler(ctx)
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

