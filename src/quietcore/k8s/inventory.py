"""Kubernetes nodes as pyinfra hosts. Pure: the nodes were listed by ``cluster``.

A node is reached at the address its annotation ``quietcore.io/ssh-address`` gives
(``host`` or ``host:port``, for nodes behind a bastion or NAT), else at its InternalIP. The
address is checked before it goes anywhere near an SSH connection.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from quietcore.inventory_file import inventory_text
from quietcore.k8s.cluster import annotations_of, node_name

ADDRESS_ANNOTATION = "quietcore.io/ssh-address"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_PORT_SUFFIX = re.compile(r"^(?P<host>.+):(?P<port>[0-9]{1,5})$")


class InventoryError(ValueError):
    """A node without a usable SSH address; the message names the node and the field."""


@dataclass(frozen=True)
class NodeAddress:
    node: str
    host: str
    port: int | None  # None: SSH's default, or the inventory's ssh_port
    source: str  # the field the address came from


def _valid_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return bool(_HOSTNAME.match(text))
    return True


def parse_address(text: str, where: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    host, port = text.strip(), None
    matched = _PORT_SUFFIX.match(host)
    if matched and (host.startswith("[") or host.count(":") == 1):
        host, port = matched["host"], int(matched["port"])
        if not 0 < port < 65536:
            raise InventoryError(f"{where}: port {port} out of range")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not _valid_host(host):
        raise InventoryError(f"{where}: {text!r} is not a host name or IP address")
    return host, port


def node_address(node: client.V1Node) -> NodeAddress:
    name = node_name(node)
    annotated = annotations_of(node).get(ADDRESS_ANNOTATION)
    if annotated is not None:
        where = f"node {name}: metadata.annotations[{ADDRESS_ANNOTATION}]"
        host, port = parse_address(annotated, where)
        return NodeAddress(name, host, port, ADDRESS_ANNOTATION)
    addresses = (node.status.addresses if node.status else None) or ()
    for address in addresses:
        if address.type == "InternalIP":
            host, port = parse_address(address.address, f"node {name}: status.addresses")
            return NodeAddress(name, host, port, "InternalIP")
    raise InventoryError(
        f"node {name}: no InternalIP in status.addresses and no {ADDRESS_ANNOTATION} annotation"
    )


def host_entry(address: NodeAddress, ssh_data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """One pyinfra host named as the node; ``ssh_data`` (user, key, known hosts) is shared."""
    data: dict[str, Any] = {**ssh_data, "ssh_hostname": address.host}
    if address.port is not None:
        data["ssh_port"] = address.port
    return address.node, data


def render_inventory(entries: Sequence[tuple[str, dict[str, Any]]], selector: str) -> str:
    """A pyinfra inventory file (Python) with one group, ``nodes``."""
    header = f"# Kubernetes nodes matching {selector!r}, written by `quietcore k8s inventory`."
    return inventory_text([header], "nodes", entries)
