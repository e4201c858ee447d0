"""The lab VM end to end: topology through quietcore, a GRUB command line that survives a
reboot, loopback-only SSH, labs side by side, and nothing stale after a kill -9."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_cli
from tests.lab.conftest import Lab, lab_ssh, run_lab

pytestmark = pytest.mark.lab

SECOND = "pytest-b"
SMALL = ("--cpus", "1", "--numa-nodes", "1", "--memory", "512M", "--nic-queues", "1")


def _qemu_processes(name: str) -> list[psutil.Process]:
    """Live (not zombie) qemu processes of a lab, found by its state directory."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if (
            process.info["status"] != psutil.STATUS_ZOMBIE
            and cmdline
            and "qemu-system" in cmdline[0]
            and any(f"/labs/{name}/" in part for part in cmdline)
        ):
            found.append(process)
    return found


def _status(name: str) -> dict[str, str]:
    """The ``lab status`` row of a lab, by column."""
    lines = run_lab("status").stdout.splitlines()
    header = lines[0].split()
    for line in lines[1:]:
        cells = line.split()
        if cells and cells[0] == name:
            return dict(zip(header, cells, strict=False))
    return {}


def test_topology_shows_the_requested_cpus_numa_nodes_and_nic(lab_vm: Lab) -> None:
    result = run_cli("topology", "--format", "json", str(lab_vm.inventory), timeout=300)
    assert result.returncode == 0, result.stderr
    [host] = result.json()
    assert host["host"] == "lab-pytest"
    assert host["online_cpus"] == "0-3"
    assert [(node["node"], node["cpus"]) for node in host["numa_nodes"]] == [
        (0, "0-1"),
        (1, "2-3"),
    ]
    assert all(node["mem_total_kib"] > 800 * 1024 for node in host["numa_nodes"])
    assert host["sockets"] == 2
    [data] = [nic for nic in host["interfaces"] if nic["rx_queues"] == 4]
    assert data["driver"] == "virtio_net"
    assert data["tx_queues"] == 4
    # MSI-X: one vector per rx and per tx queue, plus config (+ control).
    assert len(data["irqs"]) >= 2 * 4


def test_lscpu_in_the_guest_agrees(lab_vm: Lab) -> None:
    lscpu = json.loads(lab_vm.ssh("lscpu --json"))
    fields = {item["field"].rstrip(":"): item["data"] for item in lscpu["lscpu"]}
    assert fields["CPU(s)"] == "4"
    assert fields["NUMA node(s)"] == "2"
    assert fields["NUMA node1 CPU(s)"] == "2,3"


def test_ssh_listens_on_loopback_only(lab_vm: Lab) -> None:
    [qemu] = _qemu_processes(lab_vm.name)
    listening = [c for c in qemu.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_a_grub_command_line_change_takes_effect_after_lab_reboot(lab_vm: Lab) -> None:
    before = lab_vm.ssh("cat /proc/sys/kernel/random/boot_id").strip()
    lab_vm.ssh(
        "printf '%s\\n' 'GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT isolcpus=3\"'"
        " > /etc/default/grub.d/50-quietcore-test.cfg && update-grub",
        timeout=300,
    )
    reboot = run_lab("reboot", lab_vm.name, timeout=900)
    assert reboot.returncode == 0, reboot.stderr
    assert "rebooted" in reboot.stderr
    after = lab_vm.ssh(
        "cat /proc/sys/kernel/random/boot_id /proc/cmdline /sys/devices/system/cpu/isolated"
    ).splitlines()
    assert after[0] != before
    assert "isolcpus=3" in after[1].split()
    assert after[2] == "3"


def test_second_lab_side_by_side_then_kill_9_leaves_nothing_stale(lab_vm: Lab) -> None:
    run_lab("down", SECOND)
    try:
        first = run_lab("up", "--name", SECOND, *SMALL, timeout=900)
        assert first.returncode == 0, first.stderr
        # Side by side: both labs up, distinct ports, one inventory reaching both.
        rows = _status(lab_vm.name), _status(SECOND)
        assert [row["state"] for row in rows] == ["up", "up"]
        assert rows[0]["ssh"] != rows[1]["ssh"]
        both = Path(first.stdout.strip()).parent / "both.py"
        written = run_lab("inventory", lab_vm.name, SECOND, "-o", str(both))
        assert written.returncode == 0, written.stderr
        topology = run_cli("topology", "--format", "json", str(both), timeout=300)
        assert topology.returncode == 0, topology.stderr
        assert [(h["host"], h["online_cpus"]) for h in topology.json()] == [
            ("lab-pytest", "0-3"),
            ("lab-pytest-b", "0"),
        ]

        marker = lab_ssh(SECOND, "touch /root/stale && cat /proc/sys/kernel/random/boot_id")
        assert marker.returncode == 0, marker.stderr
        [qemu] = _qemu_processes(SECOND)
        qemu.send_signal(signal.SIGKILL)
        _wait_gone(SECOND)
        assert _status(SECOND)["state"] == "stopped"

        second = run_lab("up", "--name", SECOND, *SMALL, timeout=900)
        assert second.returncode == 0, second.stderr
        assert "clearing what a stopped or killed run left behind" in second.stderr
        [new_qemu] = _qemu_processes(SECOND)
        assert new_qemu.pid != qemu.pid
        fresh = lab_ssh(
            SECOND, "cat /proc/sys/kernel/random/boot_id; test -e /root/stale && echo stale"
        )
        assert fresh.stdout.splitlines()[0] != marker.stdout.strip()
        assert "stale" not in fresh.stdout  # a fresh overlay, not the killed lab's disk
    finally:
        down = run_lab("down", SECOND)
    assert down.returncode == 0, down.stderr
    assert _qemu_processes(SECOND) == []
    overlay_dir = Path(lab_vm.inventory).parent.parent / SECOND
    assert not overlay_dir.exists()
    assert not Path("/sys/class/net/qc" + SECOND).exists()
    # The first lab is untouched by all of that.
    assert _status(lab_vm.name)["state"] == "up"


def _wait_gone(name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _qemu_processes(name):
        assert time.monotonic() < deadline, f"qemu of {name} survived SIGKILL"
        time.sleep(0.1)


def test_lab_down_leaves_no_qemu_no_overlay_no_tap(lab_vm: Lab) -> None:
    directory = lab_vm.inventory.parent
    assert (directory / "overlay.qcow2").exists()
    result = run_lab("down", lab_vm.name)
    assert result.returncode == 0, result.stderr
    assert "stopped and removed" in result.stderr
    assert _qemu_processes(lab_vm.name) == []
    assert not directory.exists()
    assert not Path("/sys/class/net/qc" + lab_vm.name).exists()
    assert lab_vm.name not in run_lab("status").stdout
