"""`dockyard-registry`: the registry's command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockyard-registry", description="Dockyard's OCI registry server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the registry")
    serve.add_argument("--config", type=Path, default=os.environ.get("DOCKYARD_CONFIG"), help="YAML settings file")
    serve.add_argument("--listen", help="HOST:PORT to listen on (default 0.0.0.0:5000)")
    serve.add_argument("--storage-root", type=Path, help="directory of the filesystem backend (default ./data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides.setdefault("http", {})["listen"] = args.listen
    if args.storage_root:
        overrides.setdefault("storage", {})["root"] = str(args.storage_root)
    try:
        settings = load_settings(args.config, overrides)
        from .server import serve

        serve(settings)
    except ConfigError as error:
        print(f"dockyard-registry: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
