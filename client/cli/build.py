"""`dockyard build`: send a build context to the daemon and show the build as docker does.

    dockyard build [-t NAME[:TAG]]... [-f FILE|-] [--build-arg K=V]... [--label K=V]... [--no-cache]
                   [--pull] [-q] [--target STAGE] [--iidfile FILE] [--rm|--no-rm] [--force-rm] PATH|-

PATH is a directory (tarred minus its `.dockerignore` exclusions) or `-` (a context tar, or a
bare Dockerfile, on stdin). `-f -` reads the Dockerfile from stdin. The exit status is 0, or the
failed step's exit code (1 for other errors), as docker's.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..build_context import write_context
from .context import Context, UsageError

TAR_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    import os

    out = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        if not equals and what == "build-arg":
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _looks_like_tar(head: bytes) -> bool:
    return head.startswith(TAR_MAGICS) or (len(head) >= 262 and head[257:262] == b"ustar")


def _context(args: Any, spool: Any) -> str:
    """Write the context tar into `spool`; the Dockerfile's name inside it."""
    dockerfile = args.file or "Dockerfile"
    if args.path == "-":
        if args.file == "-":
            raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
        data = sys.stdin.buffer.read()
        if _looks_like_tar(data[:512]):
            spool.write(data)
            return dockerfile
        import io
        import tarfile

        with tarfile.open(fileobj=spool, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return "Dockerfile"
    directory = Path(args.path)
    if not directory.is_dir():
        raise UsageError(f"unable to prepare context: path {args.path!r} not found")
    extra: dict[str, bytes] = {}
    if args.file == "-":
        dockerfile = f".dockerfile.{secrets.token_hex(10)}"
        extra[dockerfile] = sys.stdin.buffer.read()
    elif args.file:
        given = Path(args.file)
        try:
            dockerfile = str(given.resolve().relative_to(directory.resolve()))
        except ValueError:
            if not given.is_file():
                raise UsageError(f"unable to prepare context: the Dockerfile {args.file} does not exist") from None
            dockerfile = f".dockerfile.{secrets.token_hex(10)}"
            extra[dockerfile] = given.read_bytes()
    write_context(directory, spool, dockerfile=dockerfile, extra=extra)
    return dockerfile


def build_command(ctx: Context) -> int:
    args = ctx.args
    tags = [str(ctx.reference(tag)) for tag in args.tag or []]
    with tempfile.TemporaryFile() as spool:
        dockerfile = _context(args, spool)
        size = spool.tell()
        spool.seek(0)
        if not args.quiet:
            ctx.print(f"Sending build context to Dockyard daemon  {_size(size)}")
        messages = ctx.daemon().build(
            spool, dockerfile=dockerfile, tags=tags, build_args=_pairs(args.build_arg, "build-arg"),
            labels=_pairs(args.label, "label"), no_cache=args.no_cache, pull=args.pull, quiet=args.quiet,
            remove=args.rm, force_remove=args.force_rm, target=args.target,
        )  # fmt: skip
        image_id = None
        for message in messages:
            if message.get("error"):
                sys.stdout.flush()
                ctx.error(message["error"])
                code = (message.get("errorDetail") or {}).get("code") or 1
                return int(code)
            if message.get("aux", {}).get("ID"):
                image_id = message["aux"]["ID"]
            if message.get("stream") and not args.quiet:
                sys.stdout.write(message["stream"])
                sys.stdout.flush()
    if image_id is None:
        ctx.error("the daemon ended the build without an image ID")
        return 1
    if args.quiet:
        ctx.print(image_id)
    if args.iidfile:
        Path(args.iidfile).write_text(image_id)
    return 0


def _size(count: int) -> str:
    from .output import human_size

    return human_size(count)
