"""The `dockyard` image commands through the daemon (the default; `--store DIR` uses
`images` and `registry` on a store directly, without a daemon).

Same names, flags and output as the daemonless versions and as docker's: the daemon answers
in the Engine API's shapes, printed here with `output`'s tables, sizes and ages.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..daemon import DaemonError
from .context import Context, UsageError
from .output import MISSING, NONE, ago, history_lines, history_row, human_size, images_lines


def print_progress(ctx: Context, messages: Any, *, quiet: bool = False) -> dict[str, Any]:
    """Docker's progress messages as plain lines (one per layer state change); the last `aux`."""
    aux: dict[str, Any] = {}
    for message in messages:
        if message.get("aux"):
            aux = message["aux"]
            continue
        status = message.get("status")
        if quiet or not status or status in ("Downloading", "Pushing"):
            continue
        ctx.print(f"{message['id']}: {status}" if message.get("id") else status)
    return aux


def _unix_to_text(value: int) -> str:
    return datetime.fromtimestamp(value or 0, timezone.utc).isoformat()


def images_command(ctx: Context) -> int:
    args = ctx.args
    images = ctx.daemon().images(reference=args.repository)
    now = datetime.now(timezone.utc)
    rows = []
    for image in images:
        image_id = image["Id"] if args.no_trunc else image["Id"].split(":", 1)[1][:12]
        names = image.get("RepoTags") or []
        pairs = [name.rsplit(":", 1) for name in names] or [[NONE, NONE]]
        for repository, tag in pairs:
            rows.append((repository, tag, image_id, ago(_unix_to_text(image.get("Created") or 0), now), human_size(image.get("Size") or 0)))
    for line in images_lines(rows, quiet=args.quiet):
        ctx.print(line)
    return 0


def tag_command(ctx: Context) -> int:
    target = ctx.reference(ctx.args.target)
    ctx.daemon().tag(ctx.args.source, target.name, target.tag)
    return 0


def rmi_command(ctx: Context) -> int:
    api = ctx.daemon()

    def remove(name: str) -> None:
        for item in api.remove_image(name, force=ctx.args.force):
            for key in ("Untagged", "Deleted"):
                if key in item:
                    ctx.print(f"{key}: {item[key]}")

    return ctx.each(ctx.args.images, remove)


def inspect_command(ctx: Context) -> int:
    """docker's `inspect`: a container of that name or ID, else an image."""
    api = ctx.daemon()
    documents: list[dict[str, Any]] = []

    def inspect(name: str) -> None:
        try:
            documents.append(api.inspect_container(name))
            return
        except DaemonError as error:
            if error.status != 404:
                raise
        try:
            documents.append(api.inspect_image(name))
        except DaemonError as error:
            raise DaemonError(error.status, f"No such object: {name}" if error.status == 404 else error.message) from None

    status = ctx.each(ctx.args.images, inspect)
    ctx.print(json.dumps(documents, indent=4, ensure_ascii=False))
    return status


def history_command(ctx: Context) -> int:
    args = ctx.args
    steps = ctx.daemon().history(args.image)
    now = datetime.now(timezone.utc)
    rows = []
    for step in steps:
        image = step["Id"]
        if image != MISSING and not args.no_trunc:
            image = image.split(":", 1)[1][:12]
        created = _unix_to_text(step["Created"]) if step.get("Created") else None
        rows.append(history_row(image, created, step.get("CreatedBy") or "", step.get("Size") or 0, step.get("Comment") or "",
                                no_trunc=args.no_trunc, now=now))  # fmt: skip
    for line in history_lines(rows, quiet=args.quiet):
        ctx.print(line)
    return 0


def save_command(ctx: Context) -> int:
    chunks = ctx.daemon().get_images(list(ctx.args.images))
    if ctx.args.output:
        target = Path(ctx.args.output)
        temp = target.with_name(f".{target.name}.partial")
        with open(temp, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        temp.rename(target)
    elif sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    else:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
    return 0


def load_command(ctx: Context) -> int:
    if ctx.args.input:
        with open(ctx.args.input, "rb") as source:
            messages = list(ctx.daemon().load_image(source))
    elif sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is a terminal: use -i FILE or redirect")
    else:
        messages = list(ctx.daemon().load_image(sys.stdin.buffer))
    for message in messages:
        if message.get("stream"):
            ctx.out.write(message["stream"])
    ctx.out.flush()
    return 0


def pull_command(ctx: Context) -> int:
    args = ctx.args
    reference = ctx.reference(args.image)
    print_progress(ctx, ctx.daemon().pull(str(reference), platform=args.platform, credentials=ctx.registry_auth(args.image)), quiet=args.quiet)
    ctx.print(str(reference))
    return 0


def push_command(ctx: Context) -> int:
    args = ctx.args
    reference = ctx.reference(args.image)
    print_progress(ctx, ctx.daemon().push(reference.name, tag=reference.tag, credentials=ctx.registry_auth(args.image)), quiet=args.quiet)
    if args.quiet:
        ctx.print(str(reference))
    return 0


def import_command(ctx: Context) -> int:
    args = ctx.args
    repository, tag = ctx.repository_and_tag(args.repository)
    if args.file == "-":
        messages = ctx.daemon().import_image(sys.stdin.buffer, repository=repository, tag=tag, message=args.message or "", changes=args.change)
        aux = list(messages)
    else:
        with open(args.file, "rb") as source:
            aux = list(ctx.daemon().import_image(source, repository=repository, tag=tag, message=args.message or "", changes=args.change))
    for message in aux:
        if message.get("status"):
            ctx.print(message["status"])
    return 0
