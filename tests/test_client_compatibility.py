"""What clients beyond docker and skopeo rely on: absolute `Location` URLs (also behind a
TLS-terminating proxy) and a mount's source repository in the challenge."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from registry.api.app import create_app
from registry.config import HttpSettings, Settings
from tests.conftest import free_port, start_registry, stop_process, wait_for_port
from tests.hub import basic, bearer, create_user, hub_client
from tests.oci import location_of, push_image, random_blob, random_image
from tests.test_hub_auth import push_image_as

CHALLENGE_SCOPE = re.compile(r'scope="([^"]*)"')


async def test_mount_challenge_names_the_source_and_a_token_with_both_scopes_mounts(aiohttp_client, storage):
    client = await hub_client(aiohttp_client, storage)
    alice = await create_user(client, "alice")
    image = random_image(layers=1)
    await push_image_as(client, alice, "alice/app", image)
    layer = image.layers[0].digest
    params = {"mount": layer, "from": "alice/app"}
    challenged = await client.post("/v2/alice/copy/blobs/uploads/", params=params)
    assert challenged.status == 401
    scopes = CHALLENGE_SCOPE.search(challenged.headers["WWW-Authenticate"]).group(1).split()
    assert scopes == ["repository:alice/copy:pull,push", "repository:alice/app:pull"]
    # a client asking for exactly the challenged scope, in one parameter as python-dxf does
    response = await client.get("/token", params={"service": "dockyard", "scope": " ".join(scopes)}, headers=basic(*alice))
    token = (await response.json())["token"]
    mounted = await client.post("/v2/alice/copy/blobs/uploads/", params=params, headers={"Authorization": f"Bearer {token}"})
    assert mounted.status == 201
    assert location_of(mounted) == f"/v2/alice/copy/blobs/{layer}"
    # without the source scope: an upload session, and nothing of alice/app is linked
    only_target = await bearer(client, alice, "repository:alice/other:pull,push")
    started = await client.post("/v2/alice/other/blobs/uploads/", params=params, headers=only_target)
    assert started.status == 202
    assert (await client.head(f"/v2/alice/other/blobs/{layer}", headers=only_target)).status == 404
    plain = await client.post("/v2/alice/copy/blobs/uploads/")
    assert CHALLENGE_SCOPE.search(plain.headers["WWW-Authenticate"]).group(1) == "repository:alice/copy:pull,push"


async def test_locations_are_absolute_urls_of_the_public_url_when_set(aiohttp_client, storage):
    settings = Settings(http=HttpSettings(public_url="https://registry.example.com/"))
    client = await aiohttp_client(create_app(storage, settings))
    started = await client.post("/v2/acme/app/blobs/uploads/")
    assert re.fullmatch(r"https://registry\.example\.com/v2/acme/app/blobs/uploads/[\w-]+", started.headers["Location"])
    image = random_image(layers=1)
    await push_image(client, "acme/app", image)
    put = await client.put("/v2/acme/app/manifests/2", data=image.manifest, headers={"Content-Type": image.media_type})
    assert put.headers["Location"] == f"https://registry.example.com/v2/acme/app/manifests/{image.digest}"


async def test_forwarded_headers_count_only_from_trusted_proxies(aiohttp_client, storage):
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example:443"}
    untrusting = await aiohttp_client(create_app(storage, Settings(http=HttpSettings(trusted_proxies=["10.0.0.0/8"]))))
    response = await untrusting.post("/v2/acme/app/blobs/uploads/", headers=forged)
    assert location_of(response).startswith("/v2/acme/app/blobs/uploads/")  # the request's own origin
    trusting = await aiohttp_client(create_app(storage, Settings(http=HttpSettings(trusted_proxies=["127.0.0.1/32"]))))
    response = await trusting.post("/v2/acme/app/blobs/uploads/", headers=forged)
    assert response.headers["Location"].startswith("https://evil.example:443/v2/acme/app/blobs/uploads/")
    bad_host = await trusting.post("/v2/acme/app/blobs/uploads/", headers={"X-Forwarded-Host": "a b/c"})
    location_of(bad_host)  # an invalid forwarded host is ignored
    with pytest.raises(ValueError, match="trusted_proxies"):
        HttpSettings(trusted_proxies=["not-an-address"])


NGINX = """\
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        client_max_body_size 0;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_request_buffering off;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
"""


async def test_locations_behind_a_tls_terminating_nginx_are_https_urls_of_the_proxy(tmp_path: Path) -> None:
    if shutil.which("nginx") is None:
        raise RuntimeError("this test needs nginx (apt-get install nginx)")
    registry = start_registry(tmp_path / "data", env={"DOCKYARD_HTTP__TRUSTED_PROXIES": '["127.0.0.1"]'})
    proxy_dir = tmp_path / "nginx"
    proxy_dir.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1",
         "-keyout", str(proxy_dir / "key.pem"), "-out", str(proxy_dir / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    (proxy_dir / "nginx.conf").write_text(NGINX.format(dir=proxy_dir, port=port, upstream=registry.port))
    with open(proxy_dir / "stderr.log", "wb") as log:  # the child keeps its own descriptor
        nginx = subprocess.Popen(["nginx", "-c", str(proxy_dir / "nginx.conf"), "-p", str(proxy_dir)], stderr=log)
    try:
        wait_for_port(port, nginx)
        blob = random_blob(300_000)
        base = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
            async with session.post(f"{base}/v2/acme/app/blobs/uploads/") as started:
                assert started.status == 202
                upload = started.headers["Location"]
            assert upload.startswith(f"{base}/v2/acme/app/blobs/uploads/")
            async with session.patch(upload, data=blob.data, headers={"Content-Type": "application/octet-stream"}) as patched:
                assert patched.status == 202
                upload = patched.headers["Location"]
            assert upload.startswith(f"{base}/v2/acme/app/blobs/uploads/")
            async with session.put(upload, params={"digest": blob.digest}) as done:
                assert done.status == 201
                assert done.headers["Location"] == f"{base}/v2/acme/app/blobs/{blob.digest}"
            async with session.get(done.headers["Location"]) as fetched:
                assert await fetched.read() == blob.data
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        stop_process(registry.process)

