"""/healthz and /metrics for operators."""

from __future__ import annotations

import re

from registry.api.app import create_app
from storage_backends.s3 import S3Backend
from tests.conftest import free_port
from tests.oci import push_image, random_image
from tests.s3server import REGION


async def test_health_reports_the_storage_backend(client, storage):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "storage": storage.name}


async def test_health_is_503_when_storage_is_unreachable(aiohttp_client, moto_server):
    unreachable = S3Backend("nowhere", region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", redirect=False)
    client = await aiohttp_client(create_app(unreachable))
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable" and body["storage"] == "s3" and body["error"]


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    series = f"{name}{{{wanted}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"no sample {name}{{{wanted}}} in:\n{text}"
    return float(match.group(1))


async def test_metrics_count_requests_by_route_and_status(client):
    image = random_image()
    await push_image(client, "acme/app", image, "v1")
    for _ in range(3):
        assert (await client.get("/v2/acme/app/manifests/v1")).status == 200
    assert (await client.get("/v2/acme/app/manifests/missing")).status == 404
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    route = "/v2/{name}/manifests/{reference}"
    assert sample(text, "dockyard_http_requests_total", method="GET", route=route, status="200") == 3
    assert sample(text, "dockyard_http_requests_total", method="GET", route=route, status="404") == 1
    assert sample(text, "dockyard_http_requests_total", method="PUT", route=route, status="201") == 1
    assert sample(text, "dockyard_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert sample(text, "dockyard_http_requests_in_flight") == 1  # this very request
