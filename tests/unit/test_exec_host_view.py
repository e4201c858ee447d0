"""Reading the host for `quietcore exec`, on files captured from real hosts (tests/data/exec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quietcore.workload.exec_plan import ExecError, ExecRequest, Partition, plan_exec
from quietcore.workload.host_view import read_host_view
from quietcore.workload.launch import keeps_ipc_lock

DATA = Path(__file__).parent.parent / "data" / "exec"


def test_this_machines_v1_partition() -> None:
    host = read_host_view(DATA / "host-v1-hybrid", arch="x86_64")
    assert host.cgroup_version == "v1"
    assert host.partition == Partition(
        "v1", "/sys/fs/cgroup/cpuset/quietcore-isolated", frozenset({1}), frozenset({0})
    )
    assert host.boot_isolated == frozenset()
    assert host.online == frozenset({0, 1})
    assert host.node_cpus == {0: frozenset({0, 1})}
    assert host.memory_nodes == frozenset({0})
    assert host.allowed_mems == frozenset({0})
    plan = plan_exec(ExecRequest("isolated[0]"), host)
    assert (plan.cpus, plan.cgroup, plan.mem_node) == (
        frozenset({1}),
        "/sys/fs/cgroup/cpuset/quietcore-isolated",
        0,
    )


def test_lab_v2_partition_across_two_nodes() -> None:
    host = read_host_view(DATA / "lab-v2-2nodes", arch="x86_64")
    assert host.cgroup_version == "v2"
    assert host.partition == Partition(
        "v2", "/sys/fs/cgroup/quietcore-isolated", frozenset({1, 2}), frozenset({0, 1}), "isolated"
    )
    assert host.node_cpus == {0: frozenset({0, 1}), 1: frozenset({2, 3})}
    assert host.allowed_mems == frozenset({0, 1})
    assert plan_exec(ExecRequest("isolated[1]"), host).mem_node == 1
    with pytest.raises(ExecError, match=r"spans NUMA nodes \(node 0: CPU 1, node 1: CPU 2\)"):
        plan_exec(ExecRequest("isolated"), host)


def test_lab_v2_invalid_partition_is_refused() -> None:
    host = read_host_view(DATA / "lab-v2-invalid", arch="x86_64")
    assert host.partition is not None
    assert host.partition.state == "isolated invalid (Parent unable to distribute cpu downstream)"
    with pytest.raises(ExecError, match="not a valid isolated partition"):
        plan_exec(ExecRequest("isolated[0]"), host)


def test_a_host_without_sysfs_has_nothing_isolated(tmp_path: Path) -> None:
    host = read_host_view(tmp_path, arch="x86_64")
    assert host.cgroup_version is None
    assert host.partition is None
    assert host.node_cpus == {}
    with pytest.raises(ExecError, match="no cpuset cgroup hierarchy is mounted"):
        plan_exec(ExecRequest("isolated"), host)


@pytest.mark.parametrize(
    ("capture", "euid", "keeps"),
    [
        ("host-v1-hybrid", 0, True),  # root: the bounding set, which has CAP_IPC_LOCK
        ("host-v1-hybrid", 1000, False),  # anyone else: the ambient set, empty
        ("lab-v2-2nodes", 0, True),
    ],
)
def test_who_keeps_cap_ipc_lock_across_exec(capture: str, euid: int, keeps: bool) -> None:
    status = (DATA / capture / "proc/self/status").read_text()
    assert keeps_ipc_lock(status, euid) is keeps


def test_cap_ipc_lock_bit_is_read_from_the_right_set() -> None:
    no_ipc_lock = f"CapBnd:\t{0x1FFFFFFFFFF & ~(1 << 14):016x}\nCapAmb:\t{1 << 14:016x}\n"
    assert keeps_ipc_lock(no_ipc_lock, 0) is False
    assert keeps_ipc_lock(no_ipc_lock, 1000) is True
    assert keeps_ipc_lock("", 0) is False
