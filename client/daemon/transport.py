"""HTTP/1.1 to a Docker-style daemon over its Unix socket: the only module that knows the socket.

Synchronous (the CLI is), standard library only: `http.client` on an AF_UNIX socket for
ordinary requests and streamed bodies, and a raw socket for the hijacked `attach` / `exec start`
connections (101 UPGRADED, then bytes both ways). Errors are `DaemonError` (the daemon's
`{"message"}` and status) or `DaemonUnavailable` naming the socket.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from ..errors import ClientError

API_VERSION = "1.41"
DEFAULT_HOST = "unix:///run/dockyard.sock"
CHUNK = 65536


class DaemonError(ClientError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonUnavailable(ClientError):
    """Nothing answers on the socket."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def socket_path(host: str) -> str:
    if not host.startswith("unix://"):
        raise ClientError(f"unsupported daemon host {host!r}: use unix:///PATH")
    return host[len("unix://") :]


class Response:
    def __init__(self, connection: _UnixConnection, raw: http.client.HTTPResponse) -> None:
        self.connection = connection
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers

    def json(self) -> Any:
        body = self.raw.read()
        self.close()
        return json.loads(body) if body.strip() else None

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self.raw.read1(CHUNK) if hasattr(self.raw, "read1") else self.raw.read(CHUNK):
                yield chunk
        finally:
            self.close()

    def json_lines(self) -> Iterator[dict[str, Any]]:
        """Newline-delimited JSON messages (pull, push, build, import progress)."""
        buffer = b""
        for chunk in self.chunks():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
        if buffer.strip():
            yield json.loads(buffer)

    def close(self) -> None:
        self.raw.close()
        self.connection.close()


class UnixTransport:
    def __init__(self, host: str = DEFAULT_HOST, *, timeout: float | None = None) -> None:
        self.host = host
        self.path = socket_path(host)
        self.timeout = timeout

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        query = ""
        if params:
            pairs = []
            for key, value in params.items():
                if value is None:
                    continue
                values = value if isinstance(value, (list, tuple)) else [value]
                for item in values:
                    pairs.append((key, ("1" if item else "0") if isinstance(item, bool) else str(item)))
            query = "?" + urlencode(pairs) if pairs else ""
        return f"/v{API_VERSION}{path}{query}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        data: bytes | Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a request; the response once its status is a success (DaemonError otherwise).
        `body` is sent as JSON, `data` as is (bytes or a binary file, streamed)."""
        connection = _UnixConnection(self.path, timeout if timeout is not None else self.timeout)
        send_headers = dict(headers or {})
        payload = data
        if body is not None:
            payload = json.dumps(body).encode()
            send_headers["Content-Type"] = "application/json"
        try:
            connection.request(method, self.url(path, params), body=payload, headers=send_headers)
            raw = connection.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as error:
            connection.close()
            raise DaemonUnavailable(
                f"Cannot connect to the Dockyard daemon at {self.host}. Is dockyardd running? ({error.strerror})"
            ) from None
        except PermissionError:
            connection.close()
            raise DaemonUnavailable(f"permission denied on the daemon socket {self.path}: are you in its group?") from None
        response = Response(connection, raw)
        if response.status >= 400:
            body_bytes = raw.read()
            response.close()
            raise DaemonError(response.status, _message(body_bytes, response.status))
        return response

    def hijack(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> socket.socket:
        """A connection upgraded to a raw stream (attach, exec start); DaemonError if refused."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            sock.close()
            raise DaemonUnavailable(f"Cannot connect to the Dockyard daemon at {self.host}. Is dockyardd running? ({error.strerror})") from None
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {self.url(path, params)} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(CHUNK)
            if not data:
                sock.close()
                raise DaemonError(500, "the daemon closed the connection")
            received += data
        head_bytes, rest = received.split(b"\r\n\r\n", 1)
        status_line = head_bytes.split(b"\r\n", 1)[0].decode(errors="replace")
        status = int(status_line.split()[1])
        if status >= 400:
            body_bytes = rest
            sock.settimeout(5)
            try:
                while data := sock.recv(CHUNK):
                    body_bytes += data
            except OSError:
                pass
            sock.close()
            raise DaemonError(status, _message(body_bytes, status))
        return _Prefixed(sock, rest)  # type: ignore[return-value]


class _Prefixed:
    """A socket whose first bytes were already read with the response head."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self.sock = sock
        self.prefix = prefix

    def recv(self, size: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data
        return self.sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _message(body: bytes, status: int) -> str:
    try:
        document = json.loads(body)
        if isinstance(document, dict) and document.get("message"):
            return str(document["message"])
    except ValueError:
        pass
    return body.decode(errors="replace").strip() or f"daemon answered {status}"
