"""The `dockyard` commands that talk to a registry: login, logout, search, pull, push.

Each turns its options into one call of the client library (`credentials`, `distribution`,
`pull`, `push`) and prints the result the way the docker CLI does. Errors are raised, not
printed: `cli.main` prints them as one `Error: ...` line.
"""

from __future__ import annotations

import asyncio
import getpass
import sys

from .context import Context, UsageError
from .output import ellipsis, familiar, one_line, table

SEARCH_DESCRIPTION_WIDTH = 45


def login_command(ctx: Context) -> int:
    from ocispec.reference import DOCKER_HUB, normalize_registry

    from ..login import login

    args = ctx.args
    registry = normalize_registry(args.server or DOCKER_HUB)
    username = args.username
    if args.password_stdin:
        if not username:
            raise UsageError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=ctx.err)
        password = args.password
    else:
        if not sys.stdin.isatty():
            raise UsageError("Cannot perform an interactive login from a non TTY device")
        username = username or input("Username: ").strip()
        password = getpass.getpass("Password: ")
    if not username:
        raise UsageError("Username is required")
    if not password:
        raise UsageError("Password is required")
    asyncio.run(login(registry, username, password, settings=ctx.settings()))
    ctx.print("Login Succeeded")
    return 0


def logout_command(ctx: Context) -> int:
    from ocispec.reference import DOCKER_HUB, normalize_registry

    from ..credentials import DOCKER_HUB_KEY
    from ..login import logout

    registry = normalize_registry(ctx.args.server or DOCKER_HUB)
    shown = DOCKER_HUB_KEY if registry == DOCKER_HUB else registry
    if logout(registry, ctx.settings().config_dir):
        ctx.print(f"Removing login credentials for {shown}")
    else:
        ctx.print(f"Not logged in to {shown}")
    return 0


def search_command(ctx: Context) -> int:
    from ..distribution import search

    args = ctx.args
    results = asyncio.run(search(args.term, limit=args.limit, settings=ctx.settings()))
    if results.from_catalog:
        print(
            f"Note: {results.registry} has no search API; showing repositories of its catalog "
            f"whose name contains {results.query!r}",
            file=ctx.err,
            flush=True,
        )
    rows = []
    for result in results.results:
        description = one_line(result.description)
        if not args.no_trunc:
            description = ellipsis(description, SEARCH_DESCRIPTION_WIDTH)
        rows.append((result.name, description, str(result.star_count), "[OK]" if result.is_official else ""))
    ctx.print(table(("NAME", "DESCRIPTION", "STARS", "OFFICIAL"), rows))
    return 0


def pull_command(ctx: Context) -> int:
    from ..pull import pull, stored_name

    args = ctx.args
    reference = ctx.reference(args.image)
    name = stored_name(reference)
    store = ctx.store()
    try:
        before: str | None = store.resolve(name).manifest_digest
    except LookupError:
        before = None
    if not args.quiet:
        given = ctx.reference(args.image, default_tag=None)
        if given.tag is None and given.digest is None:
            ctx.print(f"Using default tag: {reference.tag}")
        ctx.print(f"{reference.digest or reference.tag}: Pulling from {reference.repository}")
    from .progress import reporter

    with reporter(ctx.out, quiet=args.quiet, verb="Downloading") as progress:
        record = asyncio.run(pull(reference, store, platform=args.platform, progress=progress, settings=ctx.settings()))
    if not args.quiet:
        ctx.print(f"Digest: {record.index_digest or record.manifest_digest}")
        status = "Image is up to date for" if before == record.manifest_digest else "Downloaded newer image for"
        ctx.print(f"Status: {status} {familiar(name)}")
    ctx.print(name)
    return 0


def push_command(ctx: Context) -> int:
    from ..push import push

    args = ctx.args
    reference = ctx.reference(args.image)
    store = ctx.store()
    if not args.quiet:
        ctx.print(f"The push refers to repository [{reference.name}]")
    from .progress import reporter

    with reporter(ctx.out, quiet=args.quiet, verb="Pushing") as progress:
        digest = asyncio.run(push(str(reference), store, reference, progress=progress, settings=ctx.settings()))
    if args.quiet:
        ctx.print(str(reference))
    else:
        ctx.print(f"{reference.tag or reference.digest}: digest: {digest} size: {store.blob_size(digest)}")
    return 0
