"""Lab inventories: rendered pyinfra files that pyinfra (and quietcore) load as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quietcore.engine import inventory_for
from quietcore.lab.inventory import host_entry, known_hosts_line, render_inventory


def _entries(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        host_entry("lab-default", 40022, tmp_path / "a" / "id_ed25519", tmp_path / "a" / "kh"),
        host_entry("lab-big", 40023, tmp_path / "b" / "id_ed25519", tmp_path / "b" / "kh"),
    ]


def test_rendered_inventory_is_python_with_one_hosts_group(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(render_inventory(_entries(tmp_path)), namespace)
    assert namespace["hosts"] == _entries(tmp_path)


def test_lab_hosts_reach_loopback_as_root_with_only_the_lab_key(tmp_path: Path) -> None:
    [(name, data), _] = _entries(tmp_path)
    assert name == "lab-default"
    assert data == {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": 40022,
        "ssh_user": "root",
        "ssh_key": str(tmp_path / "a" / "id_ed25519"),
        "ssh_known_hosts_file": str(tmp_path / "a" / "kh"),
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }


def test_quietcore_loads_the_rendered_file_as_a_target(tmp_path: Path) -> None:
    path = tmp_path / "lab.py"
    path.write_text(render_inventory(_entries(tmp_path)))
    inventory = inventory_for([str(path)])
    hosts = {host.name: host.data for host in inventory}
    assert set(hosts) == {"lab-default", "lab-big"}
    assert hosts["lab-big"].ssh_port == 40023


def test_known_hosts_pins_the_key_on_the_loopback_port() -> None:
    line = known_hosts_line(40022, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB root@quietcore-lab\n")
    assert line == "[127.0.0.1]:40022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n"
