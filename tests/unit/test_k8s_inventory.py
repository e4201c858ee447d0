"""Nodes -> pyinfra inventory: addresses from InternalIP or the annotation, checked; the file
loads with pyinfra's own inventory loader; the CLI against the API server test double."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client
from tests.k8s_api_double import KubeApiDouble, write_kubeconfig

from quietcore.engine import inventory_for
from quietcore.k8s.inventory import (
    ADDRESS_ANNOTATION,
    InventoryError,
    host_entry,
    node_address,
    render_inventory,
)
from quietcore.k8s.rollout_cli import inventory


def _node(name: str, ip: str | None = None, annotation: str | None = None) -> client.V1Node:
    addresses = [client.V1NodeAddress(type="InternalIP", address=ip)] if ip else []
    addresses.append(client.V1NodeAddress(type="Hostname", address=name))
    annotations = {ADDRESS_ANNOTATION: annotation} if annotation is not None else None
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations),
        status=client.V1NodeStatus(addresses=addresses),
    )


def _hosts(path: Path) -> dict[str, dict[str, Any]]:
    """The file as pyinfra's own inventory loader reads it (pyinfra's API is unannotated)."""
    loaded = inventory_for([str(path)])
    return {host.name: host.data.dict() for host in loaded}  # type: ignore[no-untyped-call]


def test_internal_ip() -> None:
    address = node_address(_node("n1", ip="10.0.0.5"))
    assert (address.host, address.port, address.source) == ("10.0.0.5", None, "InternalIP")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("bastion-7.example.net:2222", "bastion-7.example.net", 2222),
        ("127.0.0.1:40022", "127.0.0.1", 40022),
        ("[fd00::5]:22", "fd00::5", 22),
        ("fd00::5", "fd00::5", None),
        ("node1", "node1", None),
    ],
)
def test_annotation_wins(text: str, host: str, port: int | None) -> None:
    address = node_address(_node("n1", ip="10.0.0.5", annotation=text))
    assert (address.host, address.port, address.source) == (host, port, ADDRESS_ANNOTATION)


@pytest.mark.parametrize("text", ["$(reboot)", "a b", "host:99999", "-oProxyCommand=x", ""])
def test_bad_annotation_names_node_and_field(text: str) -> None:
    with pytest.raises(
        InventoryError, match=rf"node n1: metadata.annotations\[{ADDRESS_ANNOTATION}\]"
    ):
        node_address(_node("n1", ip="10.0.0.5", annotation=text))


def test_no_address() -> None:
    with pytest.raises(InventoryError, match="node n1: no InternalIP"):
        node_address(_node("n1"))


def test_rendered_inventory_loads_in_pyinfra(tmp_path: Path) -> None:
    ssh = {"ssh_user": "root", "ssh_key": "/k/id"}
    entries = [
        host_entry(node_address(_node("n1", ip="10.0.0.5")), ssh),
        host_entry(node_address(_node("n2", ip="10.0.0.6", annotation="jump:2201")), ssh),
    ]
    path = tmp_path / "nodes.py"
    path.write_text(render_inventory(entries, "pool=trading"))
    hosts = _hosts(path)
    assert list(hosts) == ["n1", "n2"]
    assert hosts["n1"]["ssh_hostname"] == "10.0.0.5"
    assert "ssh_port" not in hosts["n1"]
    assert (hosts["n2"]["ssh_hostname"], hosts["n2"]["ssh_port"]) == ("jump", 2201)
    assert hosts["n2"]["ssh_user"] == "root"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[KubeApiDouble, Path]]:
    double = KubeApiDouble()
    double.add_node("n1", {"pool": "trading"}, internal_ip="10.0.0.5")
    double.add_node("n2", {"pool": "trading"}, annotations={ADDRESS_ANNOTATION: "127.0.0.1:2222"})
    double.add_node("n3", {"pool": "batch"})
    with double.serving() as api_client:
        yield double, write_kubeconfig(api_client, tmp_path / "kubeconfig")


def test_inventory_command(served: tuple[KubeApiDouble, Path], tmp_path: Path) -> None:
    _, kubeconfig = served
    out = tmp_path / "nodes.py"
    result = CliRunner().invoke(
        inventory,
        [
            "-l",
            "pool=trading",
            "--kubeconfig",
            str(kubeconfig),
            "--ssh-user",
            "root",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    hosts = _hosts(out)
    assert list(hosts) == ["n1", "n2"]
    assert (hosts["n2"]["ssh_hostname"], hosts["n2"]["ssh_port"]) == ("127.0.0.1", 2222)
    assert hosts["n1"]["ssh_user"] == "root"


def test_inventory_command_refuses_a_node_without_address(
    served: tuple[KubeApiDouble, Path],
) -> None:
    double, kubeconfig = served
    double.nodes["n1"]["status"]["addresses"] = []
    result = CliRunner().invoke(inventory, ["-l", "pool=trading", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 2
    assert "node n1: no InternalIP" in result.output


def test_selector_is_checked() -> None:
    result = CliRunner().invoke(inventory, ["-l", "pool=trading;rm -rf /"])
    assert result.exit_code == 2
    assert "not a label selector" in result.output
