"""`dockyard-registry`: the registry's command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from . import manage
from .config import ConfigError, load_settings
from .core.hub.errors import HubError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=os.environ.get("DOCKYARD_CONFIG"), help="YAML settings file")
    common.add_argument("--storage-root", type=Path, help="directory of the filesystem backend (default ./data)")
    parser = argparse.ArgumentParser(prog="dockyard-registry", description="Dockyard's OCI registry server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="run the registry")
    serve.add_argument("--listen", help="HOST:PORT to listen on (default 0.0.0.0:5000)")
    manage.add_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if getattr(args, "listen", None):
        overrides.setdefault("http", {})["listen"] = args.listen
    if args.storage_root:
        overrides.setdefault("storage", {})["root"] = str(args.storage_root)
    try:
        settings = load_settings(args.config, overrides)
        if args.command == "serve":
            from .server import serve

            return serve(settings)
        else:
            print(asyncio.run(manage.run(args, settings)))
    except ConfigError as error:
        print(f"dockyard-registry: {error}", file=sys.stderr)
        return 2
    except (HubError, ValueError) as error:
        print(f"dockyard-registry: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
