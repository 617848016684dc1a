"""Per-repository webhooks: managed through the admin API, delivered after push and delete.

A real aiohttp receiver on a loopback port records every request; deliveries are awaited
through the dispatcher (`Webhooks.wait_idle`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from ocispec import mediatypes
from registry.api.app import create_app
from registry.api.context import SERVICES
from registry.core.events import Event
from registry.core.hub import webhooks as webhook_module
from registry.core.hub.webhooks import RetryPolicy, Webhooks, WebhookStore
from registry.core.metadata import Database
from tests.hub import ADMIN, basic, bearer, create_user, hub_settings
from tests.oci import push_image, random_image

FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.04, timeout=10)
EVENT_KEYS = {"event", "delivery", "webhook", "timestamp", "registry", "repository", "tag", "digest", "media_type", "pusher"}


@dataclass
class Received:
    headers: CIMultiDict[str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    """What to answer to the 1st, 2nd, ... request; 200 after that."""
    release: asyncio.Event | None = None
    """When set, each request waits for this event before it is answered."""
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answered: int = 0


async def start_receiver(aiohttp_server, statuses: list[int] | None = None, release: asyncio.Event | None = None) -> Receiver:
    receiver = Receiver(statuses=statuses or [], release=release)

    async def hook(request: web.Request) -> web.Response:
        receiver.requests.append(Received(CIMultiDict(request.headers), await request.read()))
        index = len(receiver.requests) - 1
        receiver.arrived.set()
        if receiver.release is not None:
            await receiver.release.wait()
        receiver.answered += 1
        return web.Response(status=receiver.statuses[index] if index < len(receiver.statuses) else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/hook"))
    return receiver


async def hub(aiohttp_client, storage) -> TestClient:
    app = create_app(storage, hub_settings())
    app[SERVICES].webhooks.policy = FAST
    return await aiohttp_client(app)


def webhooks(client: TestClient) -> Webhooks:
    return client.app[SERVICES].webhooks


async def delivered(client: TestClient) -> None:
    await asyncio.wait_for(webhooks(client).wait_idle(), 20)


async def as_user(client: TestClient, credentials: tuple[str, str], name: str, actions: str = "pull,push,delete") -> None:
    client.session.headers.update(await bearer(client, credentials, f"repository:{name}:{actions}"))


async def pushed_repository(client: TestClient, credentials: tuple[str, str], name: str, *, public: bool = False) -> str:
    """`name` pushed as `credentials` (so it exists, with settings); returns the digest of `v1`."""
    await as_user(client, credentials, name)
    try:
        digest = await push_image(client, name, random_image(), "v1")
    finally:
        client.session.headers.pop("Authorization")
    if public:
        response = await client.patch(f"/api/v1/repositories/{name}", json={"visibility": "public"}, headers=basic(*credentials))
        assert response.status == 200
    return digest


async def add_webhook(client: TestClient, credentials: tuple[str, str], name: str, **body) -> dict:
    response = await client.post(f"/api/v1/repositories/{name}/-/webhooks", json=body, headers=basic(*credentials))
    assert response.status == 201, await response.text()
    return await response.json()


# -- delivery --------------------------------------------------------------------------------
async def test_push_by_tag_delivers_the_documented_signed_event(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    receiver = await start_receiver(aiohttp_server)
    hook = await add_webhook(client, alice, "alice/app", url=receiver.url, events=["push"], secret="s3cret")
    assert hook["signed"] is True and "secret" not in hook
    assert hook["events"] == ["push"] and hook["url"] == receiver.url

    image = random_image()
    await as_user(client, alice, "alice/app")
    digest = await push_image(client, "alice/app", image, "v2")
    await delivered(client)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "Dockyard-Webhook/1"
    assert request.headers["X-Dockyard-Event"] == "push"
    delivery = request.headers["X-Dockyard-Delivery"]
    assert str(uuid.UUID(delivery)) == delivery
    expected_signature = "sha256=" + hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Dockyard-Signature"], expected_signature)

    event = request.json
    assert set(event) == EVENT_KEYS
    assert event == {
        "event": "push",
        "delivery": delivery,
        "webhook": hook["id"],
        "timestamp": event["timestamp"],
        "registry": f"{client.host}:{client.port}",
        "repository": "alice/app",
        "tag": "v2",
        "digest": digest,
        "media_type": mediatypes.OCI_MANIFEST,
        "pusher": "alice",
    }
    assert event["timestamp"].endswith("Z")
    sent = datetime.fromisoformat(event["timestamp"])
    assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 60
    record = await webhooks(client).deliveries(hook["id"])
    assert [(d.id, d.attempts, d.status, d.delivered) for d in record] == [(delivery, 1, 200, True)]
    listed = await client.get(f"/api/v1/repositories/alice/app/-/webhooks/{hook['id']}/deliveries", headers=basic(*alice))
    assert [(d["id"], d["status"], d["delivered"], d["done"]) for d in (await listed.json())["deliveries"]] == [(delivery, 200, True, True)]


async def test_push_by_digest_has_a_null_tag_and_no_signature_without_secret(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    receiver = await start_receiver(aiohttp_server)
    hook = await add_webhook(client, alice, "alice/app", url=receiver.url)
    assert hook["events"] == ["push", "delete"] and hook["signed"] is False

    image = random_image(docker=True)
    await as_user(client, alice, "alice/app")
    digest = await push_image(client, "alice/app", image)
    await delivered(client)

    [request] = receiver.requests
    assert "X-Dockyard-Signature" not in request.headers
    assert request.json["tag"] is None
    assert request.json["digest"] == digest == image.digest
    assert request.json["media_type"] == mediatypes.DOCKER_MANIFEST


async def test_tag_and_manifest_deletes_deliver_delete_events(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    digest = await pushed_repository(client, alice, "alice/app")
    receiver = await start_receiver(aiohttp_server)
    hook = await add_webhook(client, alice, "alice/app", url=receiver.url, events=["delete"], secret="k")

    await as_user(client, alice, "alice/app")
    await push_image(client, "alice/app", random_image(), "v2")
    await delivered(client)
    assert receiver.requests == [], "a webhook for delete events only is not told about pushes"

    assert (await client.delete("/v2/alice/app/manifests/v1")).status == 202
    await delivered(client)
    assert (await client.delete(f"/v2/alice/app/manifests/{digest}")).status == 202
    await delivered(client)
    refused = await client.delete("/v2/alice/app/manifests/no-such-tag")
    assert refused.status == 404
    await delivered(client)

    assert [r.headers["X-Dockyard-Event"] for r in receiver.requests] == ["delete", "delete"]
    by_tag, by_digest = (r.json for r in receiver.requests)
    assert set(by_tag) == EVENT_KEYS
    assert {k: by_tag[k] for k in ("event", "webhook", "repository", "tag", "digest", "media_type", "pusher")} == {
        "event": "delete",
        "webhook": hook["id"],
        "repository": "alice/app",
        "tag": "v1",
        "digest": None,
        "media_type": None,
        "pusher": "alice",
    }
    assert (by_digest["tag"], by_digest["digest"], by_digest["pusher"]) == (None, digest, "alice")
    for request in receiver.requests:
        assert request.headers["X-Dockyard-Signature"] == "sha256=" + hmac.new(b"k", request.body, hashlib.sha256).hexdigest()


async def test_receiver_failing_twice_gets_three_attempts_of_the_same_delivery(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    receiver = await start_receiver(aiohttp_server, statuses=[500, 500])
    hook = await add_webhook(client, alice, "alice/app", url=receiver.url, secret="k")

    await as_user(client, alice, "alice/app")
    await push_image(client, "alice/app", random_image(), "v2")
    await delivered(client)

    assert len(receiver.requests) == 3
    assert len({r.headers["X-Dockyard-Delivery"] for r in receiver.requests}) == 1, "retries keep the delivery id"
    assert len({r.body for r in receiver.requests}) == 1
    [record] = await webhooks(client).deliveries(hook["id"])
    assert (record.attempts, record.status, record.delivered, record.error) == (3, 200, True, None)


async def test_delivery_gives_up_after_bounded_attempts_and_does_not_retry_client_errors(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    down = await start_receiver(aiohttp_server, statuses=[503] * 10)
    gone = await start_receiver(aiohttp_server, statuses=[410] * 10)
    down_hook = await add_webhook(client, alice, "alice/app", url=down.url)
    gone_hook = await add_webhook(client, alice, "alice/app", url=gone.url)
    unreachable = await add_webhook(client, alice, "alice/app", url="http://127.0.0.1:9/nothing-listens")

    await as_user(client, alice, "alice/app")
    await push_image(client, "alice/app", random_image(), "v2")
    await delivered(client)

    assert len(down.requests) == FAST.attempts
    assert len(gone.requests) == 1
    [down_record] = await webhooks(client).deliveries(down_hook["id"])
    assert (down_record.attempts, down_record.delivered, down_record.error) == (FAST.attempts, False, "HTTP 503")
    [gone_record] = await webhooks(client).deliveries(gone_hook["id"])
    assert (gone_record.attempts, gone_record.delivered) == (1, False)
    [refused] = await webhooks(client).deliveries(unreachable["id"])
    assert (refused.attempts, refused.delivered, refused.status) == (FAST.attempts, False, None)


async def test_slow_receiver_does_not_delay_the_push(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    release = asyncio.Event()
    receiver = await start_receiver(aiohttp_server, release=release)
    hook = await add_webhook(client, alice, "alice/app", url=receiver.url)

    await as_user(client, alice, "alice/app")
    # The receiver answers only once `release` is set, which happens after the push returned:
    # a push that waited for its webhook would never return (and time out here).
    digest = await asyncio.wait_for(push_image(client, "alice/app", random_image(), "v2"), 30)
    assert receiver.answered == 0
    await asyncio.wait_for(receiver.arrived.wait(), 20)
    [record] = await webhooks(client).deliveries(hook["id"])
    assert not record.done, "the delivery is still waiting for the receiver"

    release.set()
    await delivered(client)
    assert receiver.answered == 1
    assert receiver.requests[0].json["digest"] == digest
    [record] = await webhooks(client).deliveries(hook["id"])
    assert record.delivered and record.done


async def test_cleanup_finishes_queued_deliveries_and_cancels_stuck_ones(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    release = asyncio.Event()
    stuck = await start_receiver(aiohttp_server, release=release)
    flaky = await start_receiver(aiohttp_server, statuses=[500])
    stuck_hook = await add_webhook(client, alice, "alice/app", url=stuck.url)
    flaky_hook = await add_webhook(client, alice, "alice/app", url=flaky.url)
    dispatcher = webhooks(client)
    dispatcher.drain_timeout = 0.5

    await as_user(client, alice, "alice/app")
    await push_image(client, "alice/app", random_image(), "v2")
    await asyncio.wait_for(stuck.arrived.wait(), 20)
    await asyncio.wait_for(client.close(), 20)  # app cleanup: drain for 0.5 s, then cancel

    [flaky_record] = await dispatcher.deliveries(flaky_hook["id"])
    assert (flaky_record.attempts, flaky_record.delivered) == (2, True)
    [stuck_record] = await dispatcher.deliveries(stuck_hook["id"])
    assert stuck_record.done and not stuck_record.delivered
    dispatcher.notify(Event("push", "alice/app", tag="v3", digest=None, media_type=None, pusher=None, registry="x"))
    assert await dispatcher.deliveries(flaky_hook["id"]) == [flaky_record], "a stopped dispatcher takes no events"
    release.set()


# -- management ------------------------------------------------------------------------------
async def test_webhooks_are_kept_in_the_metadata_database_and_removed(aiohttp_client, aiohttp_server, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    first = await add_webhook(client, alice, "alice/app", url="https://hooks.example.com/a?token=x", secret="k")
    second = await add_webhook(client, alice, "alice/app", url="http://hooks.example.com:8080/b", events=["delete", "push", "push"])
    assert second["events"] == ["push", "delete"]
    assert first["id"] != second["id"]
    assert not await storage.exists("repositories/alice/app/_webhooks.json"), "webhooks live in the database, not beside the content"

    # Another replica over the same storage and database sees them (nothing is cached in the process).
    other = await aiohttp_client(create_app(storage, hub_settings()))
    listed = await other.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic(*alice))
    assert listed.status == 200
    body = await listed.json()
    assert [hook["id"] for hook in body["webhooks"]] == [first["id"], second["id"]]
    assert all("secret" not in hook for hook in body["webhooks"])
    assert [hook["signed"] for hook in body["webhooks"]] == [True, False]

    assert (await client.delete(f"/api/v1/repositories/alice/app/-/webhooks/{first['id']}", headers=basic(*alice))).status == 204
    again = await client.delete(f"/api/v1/repositories/alice/app/-/webhooks/{first['id']}", headers=basic(*alice))
    assert again.status == 404
    assert (await client.delete(f"/api/v1/repositories/alice/app/-/webhooks/{second['id']}", headers=basic(*alice))).status == 204
    empty = await client.get("/api/v1/repositories/alice/app/-/webhooks", headers=basic(*alice))
    assert await empty.json() == {"webhooks": []}


async def test_only_callers_with_admin_on_the_repository_manage_webhooks(aiohttp_client, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    bob = await create_user(client, "bob")
    writer = await create_user(client, "writer")
    await pushed_repository(client, alice, "alice/private")
    await pushed_repository(client, alice, "alice/public", public=True)
    hook = await add_webhook(client, alice, "alice/public", url="https://hooks.example.com/")
    body = {"url": "https://hooks.example.com/bob"}

    for name, status in (("alice/public", 403), ("alice/private", 404), ("alice/missing", 404)):
        responses = [
            await client.post(f"/api/v1/repositories/{name}/-/webhooks", json=body, headers=basic(*bob)),
            await client.get(f"/api/v1/repositories/{name}/-/webhooks", headers=basic(*bob)),
            await client.delete(f"/api/v1/repositories/{name}/-/webhooks/{hook['id']}", headers=basic(*bob)),
        ]
        assert [r.status for r in responses] == [status] * 3, name
    anonymous = await client.get("/api/v1/repositories/alice/public/-/webhooks")
    assert anonymous.status == 401
    assert len((await (await client.get("/api/v1/repositories/alice/public/-/webhooks", headers=basic(*alice))).json())["webhooks"]) == 1

    # Organization admins manage their namespace's webhooks; writers (push, delete) do not.
    assert (await client.post("/api/v1/orgs", json={"name": "acme"}, headers=basic(*bob))).status == 201
    added = await client.put("/api/v1/orgs/acme/members/writer", json={"role": "write"}, headers=basic(*bob))
    assert added.status == 200
    await pushed_repository(client, writer, "acme/app")
    refused = await client.post("/api/v1/repositories/acme/app/-/webhooks", json=body, headers=basic(*writer))
    assert refused.status == 403
    await add_webhook(client, bob, "acme/app", url="https://hooks.example.com/acme")
    # Site admins manage every repository's webhooks.
    await add_webhook(client, ADMIN, "alice/private", url="https://hooks.example.com/admin")
    listed = await client.get("/api/v1/repositories/alice/private/-/webhooks", headers=basic(*alice))
    assert [h["url"] for h in (await listed.json())["webhooks"]] == ["https://hooks.example.com/admin"]
    assert not await storage.exists("repositories/alice/missing/_webhooks.json")


async def test_invalid_webhooks_are_rejected_with_400_and_not_stored(aiohttp_client, storage):
    client = await hub(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    url = "/api/v1/repositories/alice/app/-/webhooks"
    bad_bodies = [
        {"url": "ftp://hooks.example.com/"},
        {"url": "javascript:alert(1)"},
        {"url": "hooks.example.com/hook"},
        {"url": "/relative"},
        {"url": "http://"},
        {"url": "http://hooks .example.com/"},
        {"url": "http://hooks.example.com:99999/"},
        {"url": "https://hooks.example.com/" + "a" * 3000},
        {"url": "https://hooks.example.com/", "events": []},
        {"url": "https://hooks.example.com/", "events": ["pull"]},
        {"url": "https://hooks.example.com/", "secret": ""},
        {"events": ["push"]},
    ]
    for body in bad_bodies:
        response = await client.post(url, json=body, headers=basic(*alice))
        assert response.status == 400, body
        assert "error" in await response.json()
    not_json = await client.post(url, data=b"url=https://x", headers=basic(*alice))
    assert not_json.status == 400
    assert not await storage.exists("repositories/alice/app/_webhooks.json")


async def test_internal_addresses_are_refused_unless_allowed(aiohttp_client, aiohttp_server, storage):
    """By default a repository admin cannot make the registry POST into its own network."""
    from registry.config import AuthSettings, Settings

    settings = Settings(auth=hub_settings().auth)  # webhooks.allow_private_networks left at its default (off)
    assert isinstance(settings.auth, AuthSettings) and not settings.webhooks.allow_private_networks
    app = create_app(storage, settings)
    app[SERVICES].webhooks.policy = FAST
    client = await aiohttp_client(app)
    alice = await create_user(client, "alice")
    await pushed_repository(client, alice, "alice/app")
    receiver = await start_receiver(aiohttp_server)
    by_address = await add_webhook(client, alice, "alice/app", url=receiver.url)
    by_name = await add_webhook(client, alice, "alice/app", url=receiver.url.replace("127.0.0.1", "localhost"))

    await as_user(client, alice, "alice/app")
    await push_image(client, "alice/app", random_image(), "v2")
    await delivered(client)
    assert receiver.requests == [], "nothing reached the loopback receiver"
    address_attempt = (await webhooks(client).deliveries(by_address["id"]))[-1]
    assert not address_attempt.delivered and "internal address" in address_attempt.error
    name_attempt = (await webhooks(client).deliveries(by_name["id"]))[-1]
    assert not name_attempt.delivered and "internal addresses" in (name_attempt.error or "")


async def test_which_repositories_have_webhooks_is_read_once_a_second_and_local_changes_count_at_once(database, monkeypatch):
    """An event in a repository without webhooks costs no query while the list of hooked
    repositories is fresh; a webhook added here is seen at once, one added through another
    process (a second engine on the database) within HOOKED_REFRESH_SECONDS."""
    monkeypatch.setattr(webhook_module, "HOOKED_REFRESH_SECONDS", 0.5)
    here, elsewhere = WebhookStore(database), WebhookStore(Database(database.url))
    try:
        assert await here.for_event("acme/app") == []
        queries: list[str] = []
        database.on_statement(queries.append)
        assert await here.for_event("acme/other") == []
        assert queries == [], "a fresh list of hooked repositories answers without a query"

        added_here = await here.add("acme/app", "http://hooks.example/here", ["push"])
        assert [hook.id for hook in await here.for_event("acme/app")] == [added_here.id], "a local add counts at once"

        added_elsewhere = await elsewhere.add("acme/other", "http://hooks.example/elsewhere", ["push"])
        await asyncio.sleep(0.6)
        assert [hook.id for hook in await here.for_event("acme/other")] == [added_elsewhere.id]

        await here.remove("acme/app", added_here.id)
        assert await here.for_event("acme/app") == []
    finally:
        await elsewhere.database.close()
