"""The userland proxy of published ports, run inside a container's shim.

Each `Forward` is a listening socket the daemon bound on the host (handed to the shim as an
inherited file descriptor) and the container address it leads to. TCP: every accepted
connection is joined to a new connection to the container, both directions copied until each
side ends (half-closes passed on). UDP: each client address gets a socket of its own towards
the container, so replies find their way back; it is dropped after a minute of silence.

Imports nothing of the daemon's: the shim runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from pydantic import BaseModel

READ_SIZE = 65536
UDP_IDLE = 60.0


class Forward(BaseModel):
    fd: int
    protocol: str
    target_ip: str
    target_port: int


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        pass


class _Tcp:
    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(self.forward.target_ip, self.forward.target_port)
        except OSError:
            client_writer.close()  # nothing listens in the container: the client sees the close
            return
        try:
            await asyncio.gather(_pipe(client_reader, target_writer), _pipe(target_reader, client_writer))
        finally:
            for writer in (client_writer, target_writer):
                with contextlib.suppress(Exception):
                    writer.close()


class _UdpReturn(asyncio.DatagramProtocol):
    def __init__(self, listener: asyncio.DatagramTransport, client: Any) -> None:
        self.listener = listener
        self.client = client
        self.last = asyncio.get_running_loop().time()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.last = asyncio.get_running_loop().time()
        self.listener.sendto(data, self.client)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: dict[Any, tuple[asyncio.DatagramTransport, _UdpReturn]] = {}
        self.pending: dict[Any, list[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr in self.peers:
            self.peers[addr][0].sendto(data)
            self.peers[addr][1].last = asyncio.get_running_loop().time()
        elif addr in self.pending:
            self.pending[addr].append(data)
        else:
            self.pending[addr] = [data]
            asyncio.ensure_future(self._open(addr))

    async def _open(self, addr: Any) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpReturn(self.transport, addr), remote_addr=(self.forward.target_ip, self.forward.target_port)
            )  # type: ignore[arg-type]
        except OSError:
            self.pending.pop(addr, None)
            return
        self.peers[addr] = (transport, protocol)
        for data in self.pending.pop(addr, []):
            transport.sendto(data)

    def close(self) -> None:
        for transport, _ in self.peers.values():
            transport.close()
        self.peers.clear()

    async def reap(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE / 4)
            now = asyncio.get_running_loop().time()
            for addr, (transport, protocol) in list(self.peers.items()):
                if now - protocol.last > UDP_IDLE:
                    transport.close()
                    del self.peers[addr]


class Proxy:
    """Every forward of one container, served until `close()`."""

    def __init__(self, forwards: list[Forward]) -> None:
        self.forwards = forwards
        self.servers: list[asyncio.AbstractServer] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.udp: list[_Udp] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for forward in self.forwards:
            kind = socket.SOCK_STREAM if forward.protocol == "tcp" else socket.SOCK_DGRAM
            sock = socket.socket(socket.AF_INET, kind, fileno=forward.fd)
            sock.setblocking(False)
            if forward.protocol == "tcp":
                self.servers.append(await asyncio.start_server(_Tcp(forward).handle, sock=sock))
            else:
                transport, protocol = await loop.create_datagram_endpoint(lambda f=forward: _Udp(f), sock=sock)
                self.transports.append(transport)
                self.udp.append(protocol)
                self.tasks.append(asyncio.ensure_future(protocol.reap()))

    def close(self) -> None:
        """Stop listening at once (the port is free again); connections in flight end with the shim."""
        for server in self.servers:
            server.close()
        for transport in self.transports:
            transport.close()
        for udp in self.udp:
            udp.close()
        for task in self.tasks:
            task.cancel()
