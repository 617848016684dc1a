"""The `dockyard` commands on the local store: images, tag, rmi, inspect, history, save, load.

Each resolves what the user typed (`Context.locate`), asks the store (or `archive` for save and
load) and prints what it got as the docker CLI would. Single-image errors are raised for
`cli.main` to print; commands taking several images (rmi, inspect) report each failure as an
`Error: ...` line, carry on with the rest and exit 1.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .context import Context, UsageError
from .output import MISSING, NONE, ago, familiar, history_lines, history_row, human_size, images_lines, split_name


def images_command(ctx: Context) -> int:
    args = ctx.args
    wanted_repository = wanted_tag = None
    if args.repository:
        wanted = ctx.reference(args.repository, default_tag=None)
        wanted_repository, wanted_tag = wanted.name, wanted.tag
    now = datetime.now(timezone.utc)
    rows: list[tuple[str, str, str, str, str]] = []
    for record in ctx.store().images():
        image_id = record.id if args.no_trunc else record.short_id
        for repository, tag in _listed_names(record):
            if wanted_repository is not None and (repository != wanted_repository or (wanted_tag and tag != wanted_tag)):
                continue
            shown = familiar(repository) if repository != NONE else NONE
            rows.append((shown, tag, image_id, ago(record.created, now), human_size(record.size)))
    for line in images_lines(rows, quiet=args.quiet):
        ctx.print(line)
    return 0


def _listed_names(record: Any) -> list[tuple[str, str]]:
    """(full repository, tag) rows of one image: one per tag; `<none>` tag for a repository known
    only by digest; `<none> <none>` for a dangling image."""
    rows = []
    for name in sorted(record.repo_tags):
        repository, tag, _ = split_name(name)
        rows.append((repository, tag or NONE))
    tagged = {repository for repository, _ in rows}
    for name in sorted(record.repo_digests):
        repository = split_name(name)[0]
        if repository not in tagged:
            rows.append((repository, NONE))
            tagged.add(repository)
    return rows or [(NONE, NONE)]


def tag_command(ctx: Context) -> int:
    target = str(ctx.reference(ctx.args.target))
    ctx.store().tag(ctx.locate(ctx.args.source), target)
    return 0


def rmi_command(ctx: Context) -> int:
    store = ctx.store()

    def remove(text: str) -> None:
        report = store.remove(ctx.locate(text), ctx.args.force)
        for name in report.untagged:
            ctx.print(f"Untagged: {familiar(name)}")
        for digest in report.deleted:
            ctx.print(f"Deleted: {digest}")

    return ctx.each(ctx.args.images, remove)


def inspect_command(ctx: Context) -> int:
    from ..image_documents import inspect_document

    store = ctx.store()
    documents: list[dict[str, Any]] = []

    def inspect(text: str) -> None:
        record = store.resolve(ctx.locate(text))
        documents.append(inspect_document(record, store.image_config(record)))

    status = ctx.each(ctx.args.images, inspect)
    ctx.print(json.dumps(documents, indent=4, ensure_ascii=False))
    return status


def history_command(ctx: Context) -> int:
    from ..image_documents import history_steps

    args = ctx.args
    store = ctx.store()
    record = store.resolve(ctx.locate(args.image))
    steps = history_steps(store.image_config(record), [layer.size for layer in record.layers])
    now = datetime.now(timezone.utc)
    rows = []
    for index, step in enumerate(steps):
        image = (record.id if args.no_trunc else record.short_id) if index == 0 else MISSING
        rows.append(history_row(image, step["created"], step["created_by"], step["size"], step["comment"], no_trunc=args.no_trunc, now=now))
    for line in history_lines(rows, quiet=args.quiet):
        ctx.print(line)
    return 0


def save_command(ctx: Context) -> int:
    from ..archive import SaveEntry, save_to_file, save_to_stream

    store = ctx.store()
    entries = []
    for text in ctx.args.images:
        key = ctx.locate(text)
        record = store.resolve(key)
        # saved by a tag: that tag; by ID or digest: every tag the image has
        tags = [key] if key in record.repo_tags else sorted(record.repo_tags)
        entries.append(SaveEntry(record, tuple(familiar(name) for name in tags)))
    if ctx.args.output:
        save_to_file(store, entries, Path(ctx.args.output))
    elif sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    else:
        save_to_stream(store, entries, sys.stdout.buffer)
    return 0


def load_command(ctx: Context) -> int:
    from ..archive import load_archive, load_from_stream

    store = ctx.store()
    default_registry = ctx.settings().default_registry
    if ctx.args.input:
        loaded = load_archive(store, Path(ctx.args.input), default_registry=default_registry)
    elif sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is a terminal: use -i FILE or redirect")
    else:
        loaded = load_from_stream(store, sys.stdin.buffer, default_registry=default_registry)
    for image in loaded:
        if image.repo_tags:
            for tag in image.repo_tags:
                ctx.print(f"Loaded image: {tag}")
        else:
            ctx.print(f"Loaded image ID: {image.image_id}")
    return 0
