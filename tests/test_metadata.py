"""The metadata database itself: migrations from empty and from the previous schema on SQLite
and PostgreSQL, the schema the code queries matching what the migrations build, concurrent
changes losing nothing, shared rate limits, and pull/push counts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from registry.api.context import SERVICES
from registry.config import ConfigError, load_settings
from registry.core.hub import Hub
from registry.core.metadata import Database
from registry.core.metadata.database import SCHEMA_VERSION, STRUCTURE
from registry.core.metadata.migrate import newest_version, open_engine, sqlite_structure
from registry.core.metadata.schema import metadata
from registry.storage import METADATA_FILE
from tests.hub import bearer, create_user, hub_client
from tests.oci import push_image, random_image


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


async def test_migrating_from_the_previous_schema_keeps_the_data_and_its_search(empty_database_url):
    database = Database(empty_database_url)
    try:
        await database.upgrade_to("0001")
        assert await database.version() == "0001"
        async with database.write() as connection:
            await connection.execute("INSERT INTO accounts (name, kind, password_hash, admin, created) VALUES ('alice', 'user', 'x', false, 1)")
            await connection.execute("INSERT INTO repositories (name, namespace, short_name, visibility, description, created) "
                                     "VALUES ('alice/redis-tools', 'alice', 'redis-tools', 'public', 'Helpers', 1)")  # fmt: skip
            await connection.execute("INSERT INTO stars (repository, \"user\", created) VALUES ('alice/redis-tools', 'alice', 1)")
            await connection.execute("UPDATE repositories SET star_count = 1")
            await connection.execute("INSERT INTO access_tokens (id, \"user\", name, secret_hash, created) VALUES ('t1', 'alice', 'laptop', 'x', 1)")

        await database.migrate()
        assert await database.version() == newest_version() == SCHEMA_VERSION, "SCHEMA_VERSION names Alembic's head"
        hub = Hub.over(database)
        settings = await hub.repositories.get("alice/redis-tools")
        assert settings is not None
        assert (settings.description, settings.star_count, settings.pull_count, settings.push_count) == ("Helpers", 1, 0, 0)
        assert await hub.repositories.starred("alice/redis-tools", "alice")
        from registry.core.hub.search import Audience

        found = await hub.search.search("redis", page=1, page_size=10, audience=Audience())
        assert [entry.name for entry in found.results] == ["alice/redis-tools"], "rows from before the migration are still indexed"
        await database.migrate()  # again: nothing to do
        assert await database.version() == SCHEMA_VERSION
        tokens = await hub.tokens.of("alice")
        assert [(token.name, token.scope) for token in tokens] == [("laptop", "admin")], "an older token keeps its full power"
    finally:
        await database.close()


async def test_the_tables_the_code_queries_are_the_tables_the_migrations_build(database):
    def columns(sync_connection) -> dict[str, set[str]]:
        inspector = inspect(sync_connection)
        return {table: {column["name"] for column in inspector.get_columns(table)} for table in metadata.tables}

    engine = open_engine(database.url)
    try:
        async with engine.connect() as connection:
            built = await connection.run_sync(columns)
    finally:
        await engine.dispose()
    assert built == {name: {column.name for column in table.columns} for name, table in metadata.tables.items()}


def test_the_sqlite_structure_file_is_what_the_migrations_build():
    dumped = subprocess.run([sys.executable, "-m", "registry.core.metadata.migrate", "--dump-sqlite"], capture_output=True, text=True, check=True)
    assert dumped.stdout == STRUCTURE.read_text(), f"{STRUCTURE.name} is out of date: regenerate it as its first lines say"


async def test_an_empty_sqlite_database_gets_the_newest_schema_without_alembic(tmp_path, monkeypatch):
    """The structure file builds exactly what the migrations build, and nothing starts Alembic."""

    async def no_alembic(self: Database, revision: str) -> None:
        raise AssertionError(f"Alembic started for {revision}")

    monkeypatch.setattr(Database, "_alembic", no_alembic)
    path = tmp_path / "fresh.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        await asyncio.gather(database.migrate(), database.migrate())
        assert await database.version() == SCHEMA_VERSION
        await Hub.over(database).users.create("alice", "pw-123456")
    finally:
        await database.close()
    assert sqlite_structure(str(path)) == STRUCTURE.read_text()


SERVING_IMPORTS = """
import asyncio, sys
from aiohttp.test_utils import TestClient, TestServer
from registry.api.app import create_app
from storage_backends.filesystem import FilesystemBackend
from tests.hub import basic, bearer, create_user, hub_settings
from tests.oci import push_image, random_image

async def main():
    client = TestClient(TestServer(create_app(FilesystemBackend(sys.argv[1]), hub_settings())))
    await client.start_server()
    try:
        alice = await create_user(client, "alice")
        client.session.headers.update(await bearer(client, alice, "repository:alice/app:pull,push"))
        await push_image(client, "alice/app", random_image(), "v1")
        assert (await client.get("/v2/alice/app/manifests/v1")).status == 200
        client.session.headers.pop("Authorization")
        found = await client.get("/v1/search", params={"q": "app"}, headers=basic(*alice))
        assert [entry["name"] for entry in (await found.json())["results"]] == ["alice/app"]
    finally:
        await client.close()
    print(sorted({name.split(".")[0] for name in sys.modules} & {"sqlalchemy", "alembic", "aiosqlite"}))

asyncio.run(main())
"""


@pytest.mark.parametrize("start", ["empty", "older schema"])
def test_a_serving_process_imports_neither_sqlalchemy_nor_alembic(tmp_path, start):
    """SQLAlchemy and Alembic are a fifth of a worker's memory: a registry that starts on an
    empty database, or on one that must be migrated (Alembic runs in a child process), and
    then serves the Hub and a push, has imported neither."""
    root = tmp_path / "store"
    if start == "older schema":
        older = Database(f"sqlite:///{root / METADATA_FILE}")
        asyncio.run(older.upgrade_to("0002"))
        asyncio.run(older.close())
    served = subprocess.run([sys.executable, "-c", SERVING_IMPORTS, str(root)], capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120)
    assert served.returncode == 0, served.stderr
    assert served.stdout.strip().splitlines()[-1] == "[]"
    database = Database(f"sqlite:///{root / METADATA_FILE}")
    try:
        assert asyncio.run(database.version()) == SCHEMA_VERSION
    finally:
        asyncio.run(database.close())


async def test_a_write_that_fails_is_rolled_back_and_its_sqlite_connection_is_reused(tmp_path):
    import sqlite3

    from registry.core.metadata.sqlite import SqliteDatabase

    database = SqliteDatabase(str(tmp_path / "t.sqlite3"))
    try:
        async with database.write() as connection:
            await connection.execute("CREATE TABLE names (name TEXT PRIMARY KEY)")
            first = connection
        with pytest.raises(sqlite3.IntegrityError):
            async with database.write() as connection:
                await connection.execute("INSERT INTO names VALUES ('a')")
                await connection.execute("INSERT INTO names VALUES ('a')")
        async with database.read() as connection:
            assert connection is first, "a failed transaction does not cost a new connection"
            assert await connection.scalar("SELECT count(*) FROM names") == 0, "nothing of the failed transaction is kept"
    finally:
        await database.close()


async def test_connections_the_database_server_closed_are_replaced(postgres_server, postgres_url):
    """After PostgreSQL closes every connection of the pool (a restart, an administrator), the
    next use of the database works: the pool opens new connections for the closed ones."""
    database = Database(postgres_url)
    try:
        await database.migrate()
        hub = Hub.over(database)
        await hub.users.create("alice", "pw-123456")
        await asyncio.gather(*(hub.users.get("alice") for _ in range(5)))  # several pooled connections
        name = postgres_url.rsplit("/", 1)[1]
        terminated = postgres_server.admin(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'")
        assert int(terminated) >= 1
        await asyncio.sleep(0.3)  # the closes reach the event loop (a restart takes longer than this)
        found = await asyncio.gather(*(hub.users.get("alice") for _ in range(5)))
        assert [user.name if user else None for user in found] == ["alice"] * 5
    finally:
        await database.close()


async def test_replicas_starting_together_migrate_once(empty_database_url, tmp_path):
    """Three processes migrating one empty database at the same moment (PostgreSQL: an advisory
    lock; SQLite: BEGIN IMMEDIATE) all succeed, and the schema is built once."""
    environment = {**os.environ, "DOCKYARD_METADATA__URL": empty_database_url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "registry", "metadata", "migrate", "--storage-root", str(tmp_path / "store")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )  # fmt: skip
        for _ in range(3)
    ]
    outcomes = [(process.wait(120), *process.communicate()) for process in processes]
    assert [outcome[0] for outcome in outcomes] == [0, 0, 0], outcomes
    assert all(f"metadata schema at version {SCHEMA_VERSION}" in outcome[1] for outcome in outcomes)
    database = Database(empty_database_url)
    try:
        assert await database.version() == SCHEMA_VERSION
    finally:
        await database.close()


async def test_concurrent_stars_and_settings_from_two_engines_lose_nothing(database):
    """Two engines on one database are two replicas as far as the database can tell."""
    other = Database(database.url)
    try:
        first, second = Hub.over(database), Hub.over(other)
        users = [f"user{index:02d}" for index in range(20)]
        for user in users:
            await first.users.create(user, "pw")
        await first.repositories.ensure("acme/app")
        await asyncio.gather(*(
            (first if index % 2 else second).repositories.star("acme/app", user, True) for index, user in enumerate(users)
        ))  # fmt: skip
        assert (await second.repositories.get("acme/app")).star_count == 20
        await asyncio.gather(second.repositories.star("acme/app", "user00", True), first.repositories.star("acme/app", "user00", True))
        assert (await first.repositories.get("acme/app")).star_count == 20, "starring twice counts once"
        await asyncio.gather(*(first.repositories.star("acme/app", user, False) for user in users[:5]))
        assert (await second.repositories.get("acme/app")).star_count == 15

        await asyncio.gather(
            first.repositories.update("acme/app", description="from the first"),
            second.repositories.update("acme/app", visibility="public"),
            second.repositories.update("acme/app", full_description="# README"),
        )
        settings = await first.repositories.get("acme/app")
        assert (settings.description, settings.visibility, settings.full_description) == ("from the first", "public", "# README")

        results = await asyncio.gather(first.users.create("taken", "pw"), second.organizations.create("taken", "user01"), return_exceptions=True)
        assert sum(isinstance(result, Exception) for result in results) == 1, "one namespace: exactly one of the two gets the name"
    finally:
        await other.close()


async def test_s3_storage_needs_a_metadata_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("DOCKYARD_STORAGE__S3__BUCKET", "b")
    with pytest.raises(ConfigError, match="storage.backend s3 needs metadata.url"):
        load_settings()
    monkeypatch.setenv("DOCKYARD_METADATA__URL", "mysql://db/hub")
    with pytest.raises(ConfigError, match="PostgreSQL or SQLite"):
        load_settings()
    monkeypatch.setenv("DOCKYARD_METADATA__URL", "postgresql://registry@db/hub")
    assert load_settings().metadata.url == "postgresql://registry@db/hub"


async def test_pulls_and_pushes_are_counted_per_repository_and_tag(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage, default_visibility="public")
    alice = await create_user(client, "alice")
    headers = await bearer(client, alice, "repository:alice/app:pull,push")
    client.session.headers.update(headers)
    try:
        image = random_image()
        await push_image(client, "alice/app", image, "v1")
        await push_image(client, "alice/app", image, "latest")
        for _ in range(3):
            assert (await client.get("/v2/alice/app/manifests/v1")).status == 200
        assert (await client.get("/v2/alice/app/manifests/latest")).status == 200
        assert (await client.get(f"/v2/alice/app/manifests/{image.digest}")).status == 200
        assert (await client.head("/v2/alice/app/manifests/v1")).status == 200, "a HEAD is not a pull"
    finally:
        client.session.headers.pop("Authorization")

    activity = client.app[SERVICES].activity
    repository = await (await client.get("/api/v1/repositories/alice/app")).json()
    assert repository["pull_count"] == 0, "counts are batched, not written per pull"
    await activity.flush()
    repository = await (await client.get("/api/v1/repositories/alice/app")).json()
    assert (repository["pull_count"], repository["push_count"]) == (5, 2)
    assert repository["last_pulled"] >= repository["pushed"] > 0
    tags = await activity.tags("alice/app")
    assert {tag: (tally.pulls, tally.pushes) for tag, tally in tags.items()} == {"v1": (3, 1), "latest": (1, 1)}
    found = await (await client.get("/v1/search", params={"q": "app"})).json()
    assert [(result["name"], result["pull_count"]) for result in found["results"]] == [("alice/app", 5)]
    page = await client.get("/")
    assert "5 pulls" in await page.text()


async def test_activity_flushes_many_repositories_and_tags_as_increments_keeping_last_times(database):
    """One flush writes every repository's and tag's counts (tags in several multi-row
    upserts); later flushes add to them, and a flush of pulls only keeps the last push time."""
    from registry.core.events import Event
    from registry.core.hub.activity import ROWS_PER_INSERT, Activity

    hub = Hub.over(database)
    names = [f"team/app{index}" for index in range(3)]
    for name in names:
        await hub.repositories.ensure(name)
    activity = Activity(database)
    tags = [f"v{index}" for index in range(ROWS_PER_INSERT + 150)]
    for tag in tags:
        activity.notify(Event("push", names[0], tag, None, None, None, ""))
    for name in names:
        activity.pulled(name, "latest")
    await activity.flush()
    first = await activity.tags(names[0])
    assert len(first) == len(tags) + 1 and first["v7"].pushes == 1 and first["latest"].pulls == 1
    pushed_at = first["v7"].last_pushed
    assert pushed_at is not None

    activity.pulled(names[0], "v7")
    activity.pulled(names[0], "v7")
    await activity.flush()
    again = (await activity.tags(names[0]))["v7"]
    assert (again.pulls, again.pushes, again.last_pushed) == (2, 1, pushed_at)
    assert again.last_pulled is not None
    settings = await hub.repositories.many(names)
    assert [(settings[name].pull_count, settings[name].push_count) for name in names] == [(3, len(tags)), (1, 0), (1, 0)]
    assert settings[names[0]].pushed is not None and settings[names[1]].pushed is None


async def test_repositories_created_in_the_background_are_in_before_any_read_and_at_stop(database):
    """`create_soon` (a push's new repository) does not wait for the database, yet every read
    in the process finds the row; `settle()` (the app's stop) writes what is pending; and a
    repository whose background write was lost (a process killed meanwhile: here a store that
    never wrote it) gets its row from the next activity flush after a push."""
    from registry.core.events import Event
    from registry.core.hub.activity import Activity

    hub = Hub.over(database, "public")
    names = [f"acme/new{index}" for index in range(30)]
    for name in names:
        hub.repositories.create_soon(name)
    found = await hub.repositories.many(names)  # a read: waits for the pending rows first
    assert sorted(found) == sorted(names) and {settings.visibility for settings in found.values()} == {"public"}

    hub.repositories.create_soon("acme/at-stop")
    await database.settle()
    other = Database(database.url)  # another process's view: no waiting on this one's pending writes
    try:
        assert await Hub.over(other).repositories.get("acme/at-stop") is not None
    finally:
        await other.close()

    assert await hub.repositories.get("acme/lost") is None  # its creation never reached the database
    activity = Activity(database, settings=hub.repositories)
    activity.notify(Event("push", "acme/lost", "v1", "sha256:" + "0" * 64, "application/vnd.oci.image.manifest.v1+json", None, "registry"))
    await activity.flush()
    lost = await hub.repositories.get("acme/lost")
    assert lost is not None and lost.visibility == "public" and lost.push_count == 1
