"""pyinfra inventories for labs: rendering is pure; ``running_hosts`` reads the lab state.

``inventory/lab.py`` in the repository calls ``running_hosts()``, so
``quietcore verify -p trading inventory/lab.py`` reaches every running lab.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from quietcore.inventory_file import HostEntry, inventory_text


def host_entry(host: str, ssh_port: int, client_key: Path, known_hosts: Path) -> HostEntry:
    """One lab as a pyinfra host: root over SSH on loopback, the lab's key and pinned host
    key, no agent and no other keys (so nothing from ~/.ssh is tried)."""
    return (
        host,
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": ssh_port,
            "ssh_user": "root",
            "ssh_key": str(client_key),
            "ssh_known_hosts_file": str(known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        },
    )


def render_inventory(entries: Sequence[HostEntry]) -> str:
    """A pyinfra inventory file (Python) with one group, ``hosts``."""
    header = (
        '"""quietcore lab hosts (written by `quietcore lab inventory`; regenerated on each'
        ' `lab up`)."""'
    )
    return inventory_text([header], "hosts", entries)


def known_hosts_line(ssh_port: int, host_key: str) -> str:
    """The known_hosts line pinning the guest's host key on its loopback port."""
    key_type, key_data = host_key.split()[:2]
    return f"[127.0.0.1]:{ssh_port} {key_type} {key_data}\n"


def running_hosts() -> list[HostEntry]:
    """Every running lab, as pyinfra host entries (for dynamic inventory files)."""
    from quietcore.lab.state import running_labs

    return [
        host_entry(lab.spec.host, lab.ssh_port, lab.client_key, lab.known_hosts)
        for lab in running_labs()
    ]
