"""`DaemonClient`: the Engine API, one method per endpoint, grouped per resource (docker-py's
low-level `APIClient` shape). Methods return decoded JSON, iterators of progress messages, or
raw sockets for attach/exec; only `UnixTransport` touches the socket.

    from client.daemon import DaemonClient
    api = DaemonClient("unix:///run/dockyard.sock")
    cid = api.create_container({"Image": "busybox", "Cmd": ["echo", "hi"]})["Id"]
    api.start(cid); api.wait(cid)  # {"StatusCode": 0, ...}
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import IO, Any

from .transport import DEFAULT_HOST, DaemonError, Response, UnixTransport

FRAME = struct.Struct(">BxxxI")


def registry_auth_header(credentials: dict[str, str] | None) -> dict[str, str]:
    """`X-Registry-Auth` for pull and push: base64url JSON of the credentials, or nothing."""
    if not credentials:
        return {}
    encoded = base64.urlsafe_b64encode(json.dumps(credentials).encode()).decode()
    return {"X-Registry-Auth": encoded}


def demux(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of Docker's multiplexed frames in a byte stream."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= FRAME.size:
            stream, length = FRAME.unpack_from(buffer)
            if len(buffer) < FRAME.size + length:
                break
            yield stream, buffer[FRAME.size : FRAME.size + length]
            buffer = buffer[FRAME.size + length :]


def start_error_exit_code(message: str) -> int:
    """The exit status docker gives a container whose process could not be started: 127 for a
    command not found, 126 for one that cannot be executed, 125 for any other daemon error."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


class SystemApi:
    transport: UnixTransport

    def ping(self) -> bool:
        return self.transport.request("GET", "/_ping").raw.read() == b"OK"

    def version(self) -> dict[str, Any]:
        return self.transport.request("GET", "/version").json()

    def info(self) -> dict[str, Any]:
        return self.transport.request("GET", "/info").json()


class ContainerApi:
    transport: UnixTransport

    def create_container(self, config: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        return self.transport.request("POST", "/containers/create", params={"name": name}, body=config).json()

    def containers(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all": all}
        if filters:
            params["filters"] = json.dumps(filters)
        return self.transport.request("GET", "/containers/json", params=params).json()

    def inspect_container(self, container: str) -> dict[str, Any]:
        return self.transport.request("GET", f"/containers/{container}/json").json()

    def start(self, container: str) -> bool:
        """True if started, False if it was running already (304)."""
        return self.transport.request("POST", f"/containers/{container}/start").status == 204

    def stop(self, container: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.transport.request("POST", f"/containers/{container}/stop", params={"t": timeout, "signal": signal}).close()

    def kill(self, container: str, signal: str | None = None) -> None:
        self.transport.request("POST", f"/containers/{container}/kill", params={"signal": signal}).close()

    def restart(self, container: str, timeout: int | None = None) -> None:
        self.transport.request("POST", f"/containers/{container}/restart", params={"t": timeout}).close()

    def wait(self, container: str, condition: str | None = None) -> dict[str, Any]:
        return self.wait_response(container, condition).json()

    def wait_response(self, container: str, condition: str | None = None) -> Response:
        """The wait request, answered (headers) before the container starts; read `.json()` later."""
        return self.transport.request("POST", f"/containers/{container}/wait", params={"condition": condition})

    def remove_container(self, container: str, *, force: bool = False, volumes: bool = False) -> None:
        self.transport.request("DELETE", f"/containers/{container}", params={"force": force, "v": volumes}).close()

    def resize(self, container: str, height: int, width: int) -> None:
        self.transport.request("POST", f"/containers/{container}/resize", params={"h": height, "w": width}).close()

    def attach_socket(self, container: str, *, stdin: bool, stdout: bool = True, stderr: bool = True, logs: bool = False) -> Any:
        params = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "stream": True, "logs": logs}
        return self.transport.hijack("POST", f"/containers/{container}/attach", params=params)

    def logs(self, container: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False, tail: str = "all", timestamps: bool = False) -> Response:
        params = {"stdout": stdout, "stderr": stderr, "follow": follow, "tail": tail, "timestamps": timestamps}
        return self.transport.request("GET", f"/containers/{container}/logs", params=params)

    def exec_create(self, container: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("POST", f"/containers/{container}/exec", body=config).json()

    def exec_start_socket(self, exec_id: str, *, tty: bool, console_size: tuple[int, int] | None = None) -> Any:
        body: dict[str, Any] = {"Detach": False, "Tty": tty}
        if console_size:
            body["ConsoleSize"] = list(console_size)
        return self.transport.hijack("POST", f"/exec/{exec_id}/start", body=body)

    def exec_start_detached(self, exec_id: str) -> None:
        self.transport.request("POST", f"/exec/{exec_id}/start", body={"Detach": True}).close()

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self.transport.request("GET", f"/exec/{exec_id}/json").json()

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.transport.request("POST", f"/exec/{exec_id}/resize", params={"h": height, "w": width}).close()

    def commit(self, container: str, *, repository: str | None = None, tag: str | None = None, author: str = "",
               message: str = "", changes: list[str] | None = None, pause: bool = True) -> dict[str, Any]:  # fmt: skip
        params = {"container": container, "repo": repository, "tag": tag, "author": author or None,
                  "comment": message or None, "changes": changes or None, "pause": pause}  # fmt: skip
        return self.transport.request("POST", "/commit", params=params, body={}).json()


class VolumeApi:
    transport: UnixTransport

    def create_volume(self, name: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
        return self.transport.request("POST", "/volumes/create", body={"Name": name or "", "Labels": labels or {}}).json()

    def volumes(self) -> list[dict[str, Any]]:
        return self.transport.request("GET", "/volumes").json()["Volumes"] or []

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return self.transport.request("GET", f"/volumes/{name}").json()

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        self.transport.request("DELETE", f"/volumes/{name}", params={"force": force}).close()

    def prune_volumes(self, *, all: bool = False) -> dict[str, Any]:
        params = {"filters": json.dumps({"all": ["true"]})} if all else None
        return self.transport.request("POST", "/volumes/prune", params=params).json()


class NetworkApi:
    transport: UnixTransport

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("POST", "/networks/create", body=body).json()

    def networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        params = {"filters": json.dumps(filters)} if filters else None
        return self.transport.request("GET", "/networks", params=params).json()

    def inspect_network(self, network: str) -> dict[str, Any]:
        return self.transport.request("GET", f"/networks/{network}").json()

    def remove_network(self, network: str) -> None:
        self.transport.request("DELETE", f"/networks/{network}").close()

    def connect(self, network: str, container: str, endpoint: dict[str, Any] | None = None) -> None:
        self.transport.request("POST", f"/networks/{network}/connect", body={"Container": container, "EndpointConfig": endpoint or {}}).close()

    def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        self.transport.request("POST", f"/networks/{network}/disconnect", body={"Container": container, "Force": force}).close()

    def prune_networks(self) -> dict[str, Any]:
        return self.transport.request("POST", "/networks/prune").json()


class ImageApi:
    transport: UnixTransport

    def images(self, *, all: bool = False, reference: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all": all}
        if reference:
            params["filters"] = json.dumps({"reference": [reference]})
        return self.transport.request("GET", "/images/json", params=params).json()

    def inspect_image(self, image: str) -> dict[str, Any]:
        return self.transport.request("GET", f"/images/{image}/json").json()

    def history(self, image: str) -> list[dict[str, Any]]:
        return self.transport.request("GET", f"/images/{image}/history").json()

    def tag(self, image: str, repository: str, tag: str | None = None) -> None:
        self.transport.request("POST", f"/images/{image}/tag", params={"repo": repository, "tag": tag}).close()

    def remove_image(self, image: str, *, force: bool = False) -> list[dict[str, str]]:
        return self.transport.request("DELETE", f"/images/{image}", params={"force": force}).json()

    def pull(self, image: str, *, platform: str | None = None, credentials: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        response = self.transport.request(
            "POST", "/images/create", params={"fromImage": image, "platform": platform}, headers=registry_auth_header(credentials)
        )
        return _raise_stream_errors(response.json_lines())

    def push(self, image: str, *, tag: str | None = None, credentials: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        headers = registry_auth_header(credentials) or {"X-Registry-Auth": "e30="}  # "{}": dockerd requires the header
        response = self.transport.request("POST", f"/images/{image}/push", params={"tag": tag}, headers=headers)
        return _raise_stream_errors(response.json_lines())

    def import_image(self, data: IO[bytes] | bytes, *, repository: str | None = None, tag: str | None = None,
                     message: str = "", changes: list[str] | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
        params = {"fromSrc": "-", "repo": repository, "tag": tag, "message": message or None, "changes": changes or None}
        response = self.transport.request("POST", "/images/create", params=params, data=data,
                                          headers={"Content-Type": "application/x-tar"})  # fmt: skip
        return _raise_stream_errors(response.json_lines())

    def get_images(self, names: list[str]) -> Iterator[bytes]:
        return self.transport.request("GET", "/images/get", params={"names": names}).chunks()

    def load_image(self, data: IO[bytes] | bytes) -> Iterator[dict[str, Any]]:
        response = self.transport.request("POST", "/images/load", data=data, headers={"Content-Type": "application/x-tar"})
        return _raise_stream_errors(response.json_lines())

    def build(
        self,
        context: IO[bytes],
        *,
        dockerfile: str = "Dockerfile",
        tags: list[str] | None = None,
        build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        no_cache: bool = False,
        pull: bool = False,
        quiet: bool = False,
        remove: bool = True,
        force_remove: bool = False,
        target: str | None = None,
        registry_config: dict[str, dict[str, str]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """`POST /build` with a context tar: the raw messages (`stream`, `aux`, `error` with
        `errorDetail.code`), for the caller to show and to decide its exit status from."""
        params: dict[str, Any] = {
            "dockerfile": dockerfile, "t": tags or None, "nocache": no_cache, "pull": pull, "q": quiet, "rm": remove,
            "forcerm": force_remove, "target": target, "version": "1",
            "buildargs": json.dumps(build_args) if build_args else None, "labels": json.dumps(labels) if labels else None,
        }  # fmt: skip
        headers = {"Content-Type": "application/x-tar"}
        if registry_config:
            headers["X-Registry-Config"] = base64.urlsafe_b64encode(json.dumps(registry_config).encode()).decode()
        return self.transport.request("POST", "/build", params=params, data=context, headers=headers).json_lines()

    def search(self, term: str, limit: int = 25) -> list[dict[str, Any]]:
        return self.transport.request("GET", "/images/search", params={"term": term, "limit": limit}).json()


def _raise_stream_errors(messages: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Progress messages; an `error` message (sent after the 200) becomes DaemonError."""
    for message in messages:
        if message.get("error"):
            raise DaemonError(500, str(message["error"]))
        yield message


class DaemonClient(SystemApi, ContainerApi, ImageApi, VolumeApi, NetworkApi):
    def __init__(self, host: str = DEFAULT_HOST, *, timeout: float | None = None) -> None:
        self.transport = UnixTransport(host, timeout=timeout)
