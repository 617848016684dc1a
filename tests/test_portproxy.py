"""The shim's userland proxy (engine.portproxy) on real loopback sockets: TCP with half-close
passed on, UDP with replies routed back to each client, and listening stopped by close()."""

from __future__ import annotations

import asyncio
import socket

from engine.portproxy import Forward, Proxy


def _listener(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    sock.setblocking(False)
    return sock


async def test_tcp_connections_are_forwarded_both_ways_with_half_close() -> None:
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close reaches us
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(upper, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    listening = _listener(socket.SOCK_STREAM)
    port = listening.getsockname()[1]
    proxy = Proxy([Forward(fd=listening.detach(), protocol="tcp", target_ip="127.0.0.1", target_port=target_port)])
    await proxy.start()
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello " * 20000)
            writer.write_eof()
            assert await reader.read() == b"HELLO " * 20000
            writer.close()
    finally:
        proxy.close()
        target.close()
    await asyncio.sleep(0.05)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # closed: the port is free again


async def test_a_tcp_client_is_closed_when_nothing_listens_in_the_container() -> None:
    unused = _listener(socket.SOCK_STREAM)
    dead_port = unused.getsockname()[1]
    unused.close()
    listening = _listener(socket.SOCK_STREAM)
    port = listening.getsockname()[1]
    proxy = Proxy([Forward(fd=listening.detach(), protocol="tcp", target_ip="127.0.0.1", target_port=dead_port)])
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        proxy.close()


async def test_udp_datagrams_are_forwarded_and_replies_reach_each_client() -> None:
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]

    echo_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    echo_port = echo_transport.get_extra_info("sockname")[1]
    listening = _listener(socket.SOCK_DGRAM)
    port = listening.getsockname()[1]
    proxy = Proxy([Forward(fd=listening.detach(), protocol="udp", target_ip="127.0.0.1", target_port=echo_port)])
    await proxy.start()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for index, client in enumerate(clients):
            client.settimeout(5)
            for turn in range(2):
                client.sendto(f"{index}-{turn}".encode(), ("127.0.0.1", port))
                reply = await loop.run_in_executor(None, client.recv, 100)
                assert reply == f"echo:{index}-{turn}".encode()
    finally:
        for client in clients:
            client.close()
        proxy.close()
        echo_transport.close()
