"""The lab's qemu command line for several shapes (pure: nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quietcore.lab.recipe import BYPASS_MAC, DATA_MAC, MGMT_MAC
from quietcore.lab.spec import LabSpec
from quietcore.lab.vm import Launch, numa_args, qemu_command


def _launch(accel: str = "tcg", directory: Path = Path("/cache/labs/x")) -> Launch:
    return Launch(
        accel=accel,  # type: ignore[arg-type]
        disk=directory / "overlay.qcow2",
        ssh_port=40022,
        pidfile=directory / "qemu.pid",
        console_log=directory / "console.log",
    )


def _options(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == flag]


def test_default_shape_four_cpus_two_nodes() -> None:
    command = qemu_command(LabSpec(name="x"), _launch())
    assert command[0] == "qemu-system-x86_64"
    assert _options(command, "-machine") == ["q35"]
    assert _options(command, "-smp") == ["cpus=4,sockets=2,cores=2,threads=1"]
    assert _options(command, "-m") == ["2048M"]
    assert _options(command, "-object") == [
        "memory-backend-ram,id=mem0,size=1024M",
        "memory-backend-ram,id=mem1,size=1024M",
    ]
    assert _options(command, "-numa") == [
        "node,nodeid=0,cpus=0-1,memdev=mem0",
        "node,nodeid=1,cpus=2-3,memdev=mem1",
    ]


def test_guest_boots_its_own_grub_never_a_qemu_kernel() -> None:
    command = qemu_command(LabSpec(name="x"), _launch())
    for flag in ("-kernel", "-initrd", "-append"):
        assert flag not in command
    [drive] = _options(command, "-drive")
    assert drive.startswith("file=/cache/labs/x/overlay.qcow2,if=none,id=disk,format=qcow2")
    assert "virtio-blk-pci,drive=disk,bus=pcie.0" in _options(command, "-device")


def test_the_guest_has_a_vtd_iommu_and_a_bypass_nic_on_its_last_numa_node() -> None:
    devices = _options(qemu_command(LabSpec(name="x", numa_nodes=2), _launch()), "-device")
    assert devices[0] == "intel-iommu,intremap=off"
    assert devices[-3:] == [
        "pxb-pcie,id=pxb1,bus_nr=128,numa_node=1,bus=pcie.0",
        "pcie-root-port,id=bypassport,bus=pxb1,chassis=9,slot=0",
        f"virtio-net-pci,netdev=bypass,bus=bypassport,mac={BYPASS_MAC}",
    ]
    one_node = LabSpec(name="small", cpus=1, numa_nodes=1, memory_mib=512, nic_queues=1)
    devices = _options(qemu_command(one_node, _launch()), "-device")
    assert devices[-2] == "pcie-root-port,id=bypassport,bus=pcie.0,chassis=9,slot=0"


def test_ssh_is_forwarded_on_loopback_only_and_the_guest_has_no_route_out() -> None:
    command = qemu_command(LabSpec(name="x"), _launch())
    netdevs = _options(command, "-netdev")
    assert netdevs[0] == "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert f"virtio-net-pci,netdev=mgmt,mac={MGMT_MAC}" in _options(command, "-device")


@pytest.mark.parametrize(("queues", "vectors"), [(1, 4), (4, 10), (8, 18)])
def test_data_nic_is_a_multiqueue_tap_with_msix_per_queue(queues: int, vectors: int) -> None:
    command = qemu_command(LabSpec(name="trade-1", nic_queues=queues), _launch())
    netdevs = _options(command, "-netdev")
    assert netdevs[1] == (
        f"tap,id=data,ifname=qctrade-1,script=no,downscript=no,queues={queues},vhost=off"
    )
    assert f"virtio-net-pci,netdev=data,mq=on,vectors={vectors},mac={DATA_MAC}" in _options(
        command, "-device"
    )


def test_kvm_uses_the_host_cpu_and_tcg_emulates_the_most_capable_one() -> None:
    kvm = qemu_command(LabSpec(name="x"), _launch("kvm"))
    tcg = qemu_command(LabSpec(name="x"), _launch("tcg"))
    assert (_options(kvm, "-accel"), _options(kvm, "-cpu")) == (["kvm"], ["host"])
    assert (_options(tcg, "-accel"), _options(tcg, "-cpu")) == (["tcg,thread=multi"], ["max"])


def test_one_node_has_no_numa_options() -> None:
    spec = LabSpec(name="small", cpus=1, numa_nodes=1, memory_mib=512, nic_queues=1)
    command = qemu_command(spec, _launch())
    assert numa_args(spec) == []
    assert "-numa" not in command
    assert _options(command, "-smp") == ["cpus=1,sockets=1,cores=1,threads=1"]
    assert _options(command, "-m") == ["512M"]


def test_smt_and_four_nodes() -> None:
    spec = LabSpec(name="big", cpus=16, numa_nodes=4, memory_mib=8192, threads=2)
    command = qemu_command(spec, _launch())
    assert _options(command, "-smp") == ["cpus=16,sockets=4,cores=2,threads=2"]
    assert _options(command, "-numa") == [
        f"node,nodeid={node},cpus={4 * node}-{4 * node + 3},memdev=mem{node}" for node in range(4)
    ]
    assert all(item.endswith("size=2048M") for item in _options(command, "-object"))


def test_one_cpu_per_node_is_written_as_a_single_cpu() -> None:
    spec = LabSpec(name="x", cpus=2, numa_nodes=2, memory_mib=1024)
    assert _options(qemu_command(spec, _launch()), "-numa") == [
        "node,nodeid=0,cpus=0,memdev=mem0",
        "node,nodeid=1,cpus=1,memdev=mem1",
    ]


def test_daemonized_with_pidfile_serial_log_and_no_display() -> None:
    command = qemu_command(LabSpec(name="x"), _launch())
    assert command[-1] == "-daemonize"
    assert _options(command, "-pidfile") == ["/cache/labs/x/qemu.pid"]
    assert _options(command, "-serial") == ["file:/cache/labs/x/console.log"]
    assert _options(command, "-display") == ["none"]
    assert "-nodefaults" in command


def test_commas_in_paths_are_escaped_for_qemu() -> None:
    command = qemu_command(LabSpec(name="x"), _launch(directory=Path("/odd,dir")))
    [drive] = _options(command, "-drive")
    assert drive.startswith("file=/odd,,dir/overlay.qcow2,if=none")
    assert _options(command, "-serial") == ["file:/odd,,dir/console.log"]
