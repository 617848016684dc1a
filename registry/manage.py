"""Offline management commands of `dockyard-registry` (users, tokens, orgs, repositories,
metadata import, gc, uploads).

They act on the storage backend and the metadata database directly, so they work whether or
not a registry is running and are seen at once by every replica using the same ones.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from storage_backends import StorageBackend

from .config import ConfigError, Settings
from .core.blobs import Blobs
from .core.gc import collect, report
from .core.hub import Hub
from .core.hub.errors import HubError
from .core.metadata.json_import import UnimportedMetadata, import_json_metadata, refuse_unimported_metadata
from .core.repositories import Repositories
from .core.uploads import Uploads
from .storage import open_database, open_storage


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the management commands; `common` carries the options every command takes."""
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", parents=[common], help="create a user")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="make the user a site admin")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd = user.add_parser("passwd", parents=[common], help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    user.add_parser("list", parents=[common], help="list users")
    token = user.add_parser("token", help="personal access tokens").add_subparsers(dest="token_action", required=True)
    create = token.add_parser("create", parents=[common], help="create a token (printed once)")
    create.add_argument("user")
    create.add_argument("token_name")
    create.add_argument("--scope", choices=["read", "write", "delete", "admin"], default="admin",
                        help="the most the token may do: read (pull), write (and push), delete (and delete), admin (everything; default)")  # fmt: skip
    listing = token.add_parser("list", parents=[common], help="list a user's tokens")
    listing.add_argument("user")
    revoke = token.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("user")
    revoke.add_argument("token_id")

    org = commands.add_parser("org", help="manage organizations").add_subparsers(dest="action", required=True)
    org_create = org.add_parser("create", parents=[common], help="create an organization")
    org_create.add_argument("name")
    org_create.add_argument("--owner", required=True, help="user who becomes its first admin")
    member = org.add_parser("member", parents=[common], help="add, change or remove a member")
    member.add_argument("org")
    member.add_argument("user")
    member.add_argument("role", choices=["read", "write", "admin", "remove"])

    repo = commands.add_parser("repo", help="manage repository settings").add_subparsers(dest="action", required=True)
    visibility = repo.add_parser("set-visibility", parents=[common], help="make a repository public or private")
    visibility.add_argument("name")
    visibility.add_argument("visibility", choices=["public", "private"])
    describe = repo.add_parser("describe", parents=[common], help="set a repository's description")
    describe.add_argument("name")
    describe.add_argument("description")

    uploads = commands.add_parser("uploads", help="upload sessions").add_subparsers(dest="action", required=True)
    purge = uploads.add_parser("purge", parents=[common], help="delete upload sessions abandoned by clients")
    purge.add_argument("--older-than", type=float, default=24.0, metavar="HOURS", help="age in hours (default 24)")

    gc = commands.add_parser("gc", parents=[common], help="reclaim content no manifest references (safe while clients push)")
    gc.add_argument("--grace", type=float, default=1.0, metavar="HOURS",
                    help="keep unreferenced content younger than this, and trashed content this long (default 1)")
    gc.add_argument("--dry-run", action="store_true", help="report what would be trashed and deleted")
    gc.add_argument("--delete-untagged", action="store_true",
                    help="also remove manifests no tag reaches (index children and referrers of tagged ones stay)")

    metadata = commands.add_parser("metadata", help="the Hub's metadata database").add_subparsers(dest="action", required=True)
    metadata.add_parser("import", parents=[common],
                        help="copy Hub records kept as JSON in the storage backend (before the database) into the database; safe to repeat")
    metadata.add_parser("migrate", parents=[common], help="bring the database schema to this version (the server does it when it starts)")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat: "):
        raise HubError("passwords differ")
    return first


async def run(args: argparse.Namespace, settings: Settings) -> str:
    """Carry out one management command; returns what to print."""
    storage = open_storage(settings)
    database = open_database(settings, storage)
    try:
        await database.migrate()
        if args.command == "metadata":
            if args.action == "import":
                return (await import_json_metadata(storage, database)).summary()
            return f"metadata schema at version {await database.version()}"
        if args.command not in ("gc", "uploads"):
            await refuse_unimported_metadata(storage, database)
        return await _dispatch(args, storage, Hub.over(database, settings.auth.default_visibility))
    except UnimportedMetadata as error:
        raise ConfigError(str(error)) from None
    finally:
        await storage.close()
        await database.close()


async def _dispatch(args: argparse.Namespace, storage: StorageBackend, hub: Hub) -> str:
    if args.command == "user":
        if args.action == "add":
            user = await hub.users.create(args.name, _password(args), admin=args.admin)
            return f"created user {user.name}{' (admin)' if user.admin else ''}"
        if args.action == "passwd":
            await hub.users.set_password(args.name, _password(args))
            return f"password of {args.name} changed"
        if args.action == "list":
            return "\n".join(await hub.users.names())
        if args.token_action == "create":
            record, secret = await hub.tokens.create(args.user, args.token_name, args.scope)
            return f"{secret}\n(token id {record.id}, scope {record.scope}; it is shown only once)"
        if args.token_action == "list":
            return "\n".join(f"{t.id}\t{t.scope}\t{t.name}" for t in await hub.tokens.of(args.user))
        await hub.tokens.revoke(args.user, args.token_id)
        return f"revoked token {args.token_id} of {args.user}"
    if args.command == "org":
        if args.action == "create":
            org = await hub.organizations.create(args.name, args.owner)
            return f"created organization {org.name} owned by {args.owner}"
        role = None if args.role == "remove" else args.role
        org = await hub.organizations.set_member(args.org, args.user, role)
        return f"{args.org} members: " + ", ".join(f"{u}={r}" for u, r in sorted(org.members.items()))
    if args.command == "repo":
        if args.action == "set-visibility":
            settings = await hub.repositories.update(args.name, visibility=args.visibility)
        else:
            settings = await hub.repositories.update(args.name, description=args.description)
        return f"{settings.name}: {settings.visibility}, {settings.description!r}"
    if args.command == "gc":
        result = await collect(storage, grace=args.grace * 3600, dry_run=args.dry_run, delete_untagged=args.delete_untagged)
        return report(result, dry_run=args.dry_run)
    uploads = Uploads(storage, Blobs(storage, Repositories(storage)))
    purged = await uploads.purge_stale(args.older_than * 3600)
    leftovers, leftover_bytes = await storage.reclaim_leftovers(args.older_than * 3600)
    sessions = [f"{upload.name} {upload.upload_id}" for upload in purged]
    return "\n".join([*sessions, f"purged {len(purged)} upload sessions and {leftovers} leftovers of interrupted writes "
                               f"({leftover_bytes} bytes)"])
