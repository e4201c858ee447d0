"""The SSH transport that acknowledges at once: on real loopback TCP sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paramiko
import pytest

from quietcore.ssh_transport import prompt_transport, with_prompt_transport


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A client socket connected to a server socket over 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        try:
            yield client, server
        finally:
            client.close()
            server.close()


def test_a_tcp_socket_sends_at_once_and_acknowledges_every_read(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    client, server = connected
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    transport = prompt_transport(client)
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    server.sendall(b"SSH-2.0-test\r\n")
    # The kernel clears TCP_QUICKACK by itself; each read sets it again first.
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
    assert transport.sock.recv(64) == b"SSH-2.0-test\r\n"
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    # Everything else paramiko asks of its socket is the socket's own.
    assert transport.sock.getpeername() == server.getsockname()


class _ProxyCommandLike:
    """What paramiko is given for ProxyCommand or a jump host: not a TCP socket."""

    def settimeout(self, seconds: float) -> None:
        pass


def test_other_channels_are_left_as_paramiko_would_use_them() -> None:
    channel = _ProxyCommandLike()
    used: object = prompt_transport(channel).sock
    assert used is channel


def test_inventory_data_gains_the_transport_and_keeps_its_own_connect_options() -> None:
    assert with_prompt_transport({"ssh_user": "root"}) == {
        "ssh_user": "root",
        "ssh_paramiko_connect_kwargs": {"transport_factory": prompt_transport},
    }
    own = with_prompt_transport(
        {"ssh_paramiko_connect_kwargs": {"compress": True, "transport_factory": paramiko.Transport}}
    )
    assert own["ssh_paramiko_connect_kwargs"] == {
        "compress": True,
        "transport_factory": paramiko.Transport,
    }
