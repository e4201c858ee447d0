"""SSH transports that never wait on TCP's delayed ACK.

A non-interactive OpenSSH server keeps Nagle's algorithm on, so it holds a small reply (the
confirmation of a channel, the answer to a short request) until its previous small packet is
acknowledged; Linux clients delay that ACK by up to 40 ms when they have nothing to send. Each
host's read then waits ~40 ms twice (during the login and at the channel open), which is most of
an audit's time per host. The OpenSSH client sidesteps this by pipelining requests; paramiko
waits for every answer, so instead the controller acknowledges at once (``TCP_QUICKACK``,
re-armed before each read because the kernel drops it) and sends at once (``TCP_NODELAY``).
Measured on a loopback fleet: login + channel + read of a full audit 71 ms -> 26 ms per host.
"""

from __future__ import annotations

import socket
from typing import Any

import paramiko

# TCP_QUICKACK is Linux-only; elsewhere the transports are paramiko's own.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class _QuickAckSocket:
    """A connected TCP socket that acknowledges what it receives without delay."""

    def __init__(self, sock: socket.socket, quickack: int) -> None:
        self._sock = sock
        self._quickack = quickack

    def recv(self, size: int) -> bytes:
        self._sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def prompt_transport(sock: Any, **options: Any) -> paramiko.Transport:
    """paramiko's ``transport_factory``: a ``Transport`` over ``sock`` with quick ACKs and
    without Nagle when it is a plain TCP socket (not a ProxyCommand or a jump host's
    channel, which are left as they are)."""
    if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM and _QUICKACK:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = _QuickAckSocket(sock, _QUICKACK)
    return paramiko.Transport(sock, **options)


def with_prompt_transport(data: dict[str, Any]) -> dict[str, Any]:
    """A host's pyinfra data, its SSH connection made with ``prompt_transport`` unless the
    inventory already names a transport factory of its own."""
    connect_kwargs = {"transport_factory": prompt_transport}
    connect_kwargs.update(data.get("ssh_paramiko_connect_kwargs") or {})
    return {**data, "ssh_paramiko_connect_kwargs": connect_kwargs}
