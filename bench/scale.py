"""Listing and search at scale: catalog/tags pages with 200 vs 2,000 repositories (filesystem
and S3), and `/v1/search` over 100,000 repositories in the metadata database (the embedded
SQLite and PostgreSQL). Prints latencies and the 2,000/200 ratio, which stays near 1 when a
page costs O(page size) rather than O(repositories); the search target is a median under 50 ms.

    .venv/bin/python bench/scale.py [--repositories 2000] [--search-repositories 100000] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.api.app import create_app  # noqa: E402
from registry.config import MetadataSettings, Settings  # noqa: E402
from registry.core.hub.repository_settings import new_row  # noqa: E402
from registry.core.metadata import Database  # noqa: E402
from registry.core.metadata.sql import insert_into  # noqa: E402
from registry.core.repositories import Repositories  # noqa: E402
from storage_backends import StorageBackend  # noqa: E402
from storage_backends.filesystem import FilesystemBackend  # noqa: E402
from storage_backends.s3 import S3Backend  # noqa: E402
from tests.pgserver import start_postgres, stop_postgres  # noqa: E402
from tests.s3server import AWS_ENVIRONMENT, REGION, start_moto_server  # noqa: E402

WORDS = ["api", "web", "db", "cache", "worker", "proxy", "auth", "search", "queue", "metrics"]


def repository_name(index: int) -> str:
    return f"team{index % 97}/{WORDS[index % len(WORDS)]}-{index:05d}"


async def bounded(jobs: list[Callable[[], Awaitable[object]]], concurrency: int = 32) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(run(job) for job in jobs))


async def populate_catalog(storage: StorageBackend, count: int) -> list[str]:
    repositories = Repositories(storage)
    names = [repository_name(i) for i in range(count)]
    await bounded([lambda name=name: repositories.mark_exists(name) for name in names])
    await storage.put_bytes(f"repositories/{names[0]}/_manifests/tags/latest", b"sha256:" + b"0" * 64)
    return sorted(names)


async def serve(storage: StorageBackend, metadata_url: str | None = None) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(storage, Settings(metadata=MetadataSettings(url=metadata_url))))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def latencies(url: str, paths: list[str]) -> list[float]:
    timings = []
    async with aiohttp.ClientSession() as session:
        for path in paths:
            started = time.perf_counter()
            async with session.get(url + path) as response:
                assert response.status == 200, (path, response.status)
                await response.read()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def summary(timings: list[float]) -> str:
    ordered = sorted(timings)
    return f"median {statistics.median(ordered):7.2f} ms  p95 {ordered[int(len(ordered) * 0.95) - 1]:7.2f} ms"


def count_listings(storage: StorageBackend) -> dict[str, int]:
    """Wrap the backend's `list` to count calls and names returned (the work a page costs)."""
    counts = {"calls": 0, "names": 0}
    original = storage.list

    async def counted(prefix: str, **options: object) -> list[str]:
        names = await original(prefix, **options)  # type: ignore[arg-type]
        counts["calls"] += 1
        counts["names"] += len(names)
        return names

    storage.list = counted  # type: ignore[method-assign]
    return counts


async def catalog_case(make_storage: Callable[[str], StorageBackend], count: int, requests: int) -> float:
    storage = make_storage(f"catalog-{count}")
    names = await populate_catalog(storage, count)
    counts = count_listings(storage)
    runner, url = await serve(storage)
    try:
        step = max(1, len(names) // requests)
        paths = [f"/v2/_catalog?n=100&last={names[i]}" for i in range(0, len(names) - 1, step)][:requests]
        timings = await latencies(url, paths)
    finally:
        await runner.cleanup()
    print(
        f"  catalog page of 100 with {count:6d} repositories: {summary(timings)}; "
        f"per page {counts['calls'] / len(paths):.1f} list call(s) returning {counts['names'] / len(paths):.0f} names"
    )
    return statistics.median(timings)


async def search_case(label: str, database_url: str, storage: StorageBackend, count: int, requests: int) -> float:
    """`count` repositories (a tenth of them private, a fifth starred) written straight into the
    metadata database, then timed `/v1/search` requests of an anonymous client over HTTP."""
    database = Database(database_url)
    await database.migrate()
    started = time.perf_counter()
    rows = [
        new_row(repository_name(i), "private" if i % 10 == 0 else "public",
                {"description": f"{WORDS[i % 7]} service number {i}", "star_count": i % 5, "pull_count": i})
        for i in range(count)
    ]  # fmt: skip
    insert = insert_into("repositories", list(rows[0]))
    async with database.write() as connection:
        for first in range(0, len(rows), 5000):
            await connection.execute_many(insert, rows[first : first + 5000])
    await database.analyze()  # what autovacuum (PostgreSQL) does after a bulk load anyway
    print(f"  {label}: {count} repositories written in {time.perf_counter() - started:.1f} s")
    await database.close()
    runner, url = await serve(storage, metadata_url=database_url)
    try:
        queries = ["api", "team3/", "db-00042", "service number 99", "nothing-matches", "worker", "cache-0123", "re"]
        paths = [f"/v1/search?q={queries[i % len(queries)]}&n=25" for i in range(requests)]
        await latencies(url, paths[:3])  # warm the connection pool
        timings = await latencies(url, paths)
    finally:
        await runner.cleanup()
    print(f"  /v1/search over {count} repositories on {label}: {summary(timings)}")
    return statistics.median(timings)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=2000)
    parser.add_argument("--search-repositories", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    small = max(1, args.repositories // 10)
    results: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as scratch:
        print("filesystem backend")
        filesystem = lambda name: FilesystemBackend(Path(scratch) / name)  # noqa: E731
        few = await catalog_case(filesystem, small, args.requests)
        many = await catalog_case(filesystem, args.repositories, args.requests)
        results["filesystem catalog ratio"] = many / few
        search_root = Path(scratch) / "search"
        results["search median ms, sqlite"] = await search_case(
            "SQLite", f"sqlite:///{search_root / 'hub.sqlite3'}", FilesystemBackend(search_root), args.search_repositories, args.requests
        )
        postgres = start_postgres(Path(tempfile.mkdtemp(prefix="bench-postgres-")))
        try:
            postgres.admin("CREATE DATABASE bench")
            results["search median ms, postgresql"] = await search_case(
                "PostgreSQL", postgres.url("bench"), FilesystemBackend(Path(scratch) / "search-pg"), args.search_repositories, args.requests
            )
        finally:
            stop_postgres(postgres)
            shutil.rmtree(postgres.log.parent, ignore_errors=True)

        import os

        os.environ.update(AWS_ENVIRONMENT)
        moto = start_moto_server(Path(scratch))
        try:
            client = moto.client()

            def s3(name: str) -> StorageBackend:
                bucket = name.replace("_", "-")
                client.create_bucket(Bucket=bucket)
                return S3Backend(bucket, region=REGION, endpoint_url=moto.url, redirect=False)

            print("s3 backend (moto on loopback)")
            few = await catalog_case(s3, small, args.requests)
            many = await catalog_case(s3, args.repositories, args.requests)
            results["s3 catalog ratio"] = many / few
        finally:
            moto.stop()

    for label, value in results.items():
        if "ratio" in label:
            print(f"{label} ({args.repositories} / {small} repositories): {value:.2f}  (1.0 = independent of size)")
        else:
            print(f"{label} ({args.search_repositories} repositories): {value:.1f}  (target: under 50)")
    print("Each page is one listing of at most n+1 names on both backends. On real S3 that request is")
    print("O(page) (StartAfter/MaxKeys); moto and a local directory read scan all names internally.")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
