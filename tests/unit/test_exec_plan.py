"""`quietcore exec`'s decisions: which CPUs, which cgroup, which NUMA node, or a clear refusal."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from quietcore.workload.exec_plan import (
    ExecError,
    ExecPlan,
    ExecRequest,
    HostView,
    Partition,
    describe,
    plan_exec,
)

V1_PARTITION = "/sys/fs/cgroup/cpuset/quietcore-isolated"
V2_PARTITION = "/sys/fs/cgroup/quietcore-isolated"

# Two NUMA nodes of four CPUs: node 0 = 0-3, node 1 = 4-7; CPUs 2-3 and 6-7 isolated.
V2 = Partition("v2", V2_PARTITION, frozenset({2, 3, 6, 7}), frozenset({0, 1}), "isolated")
TWO_NODES = HostView(
    partition=V2,
    boot_isolated=frozenset(),
    online=frozenset(range(8)),
    node_cpus={0: frozenset(range(4)), 1: frozenset(range(4, 8))},
    memory_nodes=frozenset({0, 1}),
    allowed_mems=frozenset({0, 1}),
    arch="x86_64",
    cgroup_version="v2",
)
# This machine's shape: 2 CPUs, one node, cgroup v1, CPU 1 in the partition.
ONE_NODE_V1 = HostView(
    partition=Partition("v1", V1_PARTITION, frozenset({1}), frozenset({0})),
    boot_isolated=frozenset(),
    online=frozenset({0, 1}),
    node_cpus={0: frozenset({0, 1})},
    memory_nodes=frozenset({0}),
    allowed_mems=frozenset({0}),
    arch="x86_64",
    cgroup_version="v1",
)
NOTHING_ISOLATED = replace(ONE_NODE_V1, partition=None)


def plan(cpus: str, host: HostView = TWO_NODES, **options: Any) -> ExecPlan:
    return plan_exec(ExecRequest(cpus=cpus, **options), host)


def refusal(cpus: str, host: HostView = TWO_NODES, **options: Any) -> str:
    with pytest.raises(ExecError) as refused:
        plan(cpus, host, **options)
    return str(refused.value)


@pytest.mark.parametrize(
    ("cpus", "expected", "node"),
    [
        ("isolated[0]", {2}, 0),
        ("isolated[1]", {3}, 0),
        ("isolated[2]", {6}, 1),
        ("isolated[2-3]", {6, 7}, 1),
        ("isolated[0-1]", {2, 3}, 0),
        (" isolated[3] ", {7}, 1),
    ],
)
def test_positions_of_the_partition_join_it_with_local_memory(
    cpus: str, expected: set[int], node: int
) -> None:
    chosen = plan(cpus)
    assert chosen.cpus == frozenset(expected)
    assert chosen.cgroup == V2_PARTITION
    assert chosen.mem_node == node
    assert chosen.notes == ()
    assert chosen.origin == f"{cpus.strip()} of the cgroup v2 partition {V2_PARTITION} (2-3,6-7)"


def test_v1_partition_on_this_machines_shape() -> None:
    chosen = plan("isolated[0]", ONE_NODE_V1, fifo=50, mlock=True)
    assert chosen == ExecPlan(
        cpus=frozenset({1}),
        origin=f"isolated[0] of the cgroup v1 partition {V1_PARTITION} (1)",
        cgroup=V1_PARTITION,
        mem_node=0,
        fifo=50,
        mlock=True,
    )


def test_position_out_of_range_names_what_there_is() -> None:
    message = refusal("isolated[4]")
    assert message == (
        "--cpus isolated[4]: isolated[4] asks for position 4 but isolated has 4 CPUs (2-3,6-7)"
    )
    assert "asks for position 5" in refusal("isolated[1-5]")
    assert "reversed position range" in refusal("isolated[3-1]")


def test_cpus_across_nodes_need_an_explicit_memory_node() -> None:
    message = refusal("isolated")
    assert "spans NUMA nodes (node 0: CPU 2-3, node 1: CPU 6-7)" in message
    assert "--mem-node N" in message
    assert "spans NUMA nodes" in refusal("isolated[1-2]")
    assert plan("isolated", mem_node="1").mem_node == 1
    assert plan("isolated", mem_node="none").mem_node is None


@pytest.mark.parametrize(
    ("mem_node", "expected"),
    [
        ("7", "--mem-node 7: no such NUMA node (nodes: 0-1)"),
        ("near", "--mem-node 'near': give local, none or a NUMA node number"),
        ("-1", "--mem-node '-1': give local, none or a NUMA node number"),
    ],
)
def test_bad_memory_nodes(mem_node: str, expected: str) -> None:
    assert refusal("isolated[0]", mem_node=mem_node) == expected


def test_memoryless_local_node_is_refused() -> None:
    cpu_only_node1 = replace(TWO_NODES, memory_nodes=frozenset({0}))
    message = refusal("isolated[2]", cpu_only_node1)
    assert message.startswith("NUMA node 1 has no memory; choose --mem-node N")
    assert plan("isolated[2]", cpu_only_node1, mem_node="0").mem_node == 0


def test_memory_node_must_be_one_the_partition_allows() -> None:
    node0_only = replace(TWO_NODES, partition=replace(V2, mems=frozenset({0})))
    assert "outside the memory nodes the cpuset allows (0)" in refusal("isolated[2]", node0_only)


def test_binding_memory_needs_a_known_syscall_number() -> None:
    riscv = replace(TWO_NODES, arch="riscv64")
    message = refusal("isolated[0]", riscv)
    assert "x86_64 and aarch64 only (this host is riscv64)" in message
    assert "--mem-node none" in message
    assert plan("isolated[0]", riscv, mem_node="none").mem_node is None
    assert plan("isolated[0]", replace(TWO_NODES, arch="aarch64")).mem_node == 0


def test_kernel_without_numa_binds_nothing_for_local() -> None:
    no_numa = replace(ONE_NODE_V1, node_cpus={}, memory_nodes=frozenset())
    chosen = plan("isolated[0]", no_numa)
    assert chosen.mem_node is None
    assert chosen.notes == ("this kernel shows no NUMA nodes: memory is not bound",)
    assert "no such NUMA node (nodes: none)" in refusal("isolated[0]", no_numa, mem_node="0")


def test_boot_time_isolcpus_is_the_fallback_without_a_cgroup() -> None:
    boot = replace(NOTHING_ISOLATED, boot_isolated=frozenset({1}))
    chosen = plan("isolated[0]", boot)
    assert chosen.cpus == frozenset({1})
    assert chosen.cgroup is None
    assert chosen.origin == (
        "isolated[0] of boot-time isolcpus (/sys/devices/system/cpu/isolated) (1)"
    )
    assert "no partition cgroup to join" in chosen.notes[0]


def test_partition_wins_over_boot_time_isolcpus() -> None:
    both = replace(TWO_NODES, boot_isolated=frozenset({1}))
    assert plan("isolated[0]", both).cpus == frozenset({2})


@pytest.mark.parametrize(
    ("host", "where"),
    [
        (NOTHING_ISOLATED, V1_PARTITION),
        (replace(TWO_NODES, partition=None), V2_PARTITION),
        (replace(NOTHING_ISOLATED, cgroup_version=None), "no cpuset cgroup hierarchy is mounted"),
    ],
)
def test_no_isolated_cpus_tells_how_to_get_some(host: HostView, where: str) -> None:
    for cpus in ("isolated", "isolated[0]", "1"):
        message = refusal(cpus, host)
        assert "cpu.isolation: [cpuset]" in message or "is not isolated" in message
    message = refusal("isolated[0]", host)
    assert message.startswith(f"no CPU is isolated on this host: no quietcore partition ({where})")
    assert "`cpu.isolation: [cpuset]`" in message


@pytest.mark.parametrize(
    "state",
    ["member", "isolated invalid (Cpu list in cpuset.cpus not exclusive)", "root invalid (x)"],
)
def test_a_v2_partition_that_does_not_isolate_is_refused(state: str) -> None:
    broken = replace(TWO_NODES, partition=replace(V2, state=state))
    assert f"(cpuset.cpus.partition: {state})" in refusal("isolated[0]", broken)


def test_a_v2_root_partition_is_accepted() -> None:
    balanced = replace(TWO_NODES, partition=replace(V2, state="root"))
    assert plan("isolated[0]", balanced).cgroup == V2_PARTITION


def test_a_partition_without_cpus_is_refused() -> None:
    empty = replace(TWO_NODES, partition=replace(V2, cpus=frozenset()))
    assert refusal("isolated[0]", empty).endswith("has no CPUs (effective CPUs empty)")


def test_literal_isolated_cpus_join_the_partition() -> None:
    chosen = plan("6-7")
    assert (chosen.cpus, chosen.cgroup, chosen.mem_node) == (frozenset({6, 7}), V2_PARTITION, 1)
    assert chosen.origin == f"a CPU list, isolated by the cgroup v2 partition {V2_PARTITION}"


def test_literal_housekeeping_cpus_need_the_explicit_flag() -> None:
    message = refusal("1-2")
    assert message.startswith("--cpus 1-2: CPU 1 is not isolated (isolated CPUs: 2-3,6-7)")
    assert "--allow-housekeeping" in message
    chosen = plan("1-2", allow_housekeeping=True)
    assert (chosen.cpus, chosen.cgroup, chosen.mem_node) == (frozenset({1, 2}), None, 0)
    assert chosen.notes == (
        "CPU 1 is not isolated (--allow-housekeeping): the workload is pinned there but joins "
        "no partition",
    )
    # The flag changes nothing for CPUs that are isolated.
    assert plan("2", allow_housekeeping=True).cgroup == V2_PARTITION


def test_housekeeping_memory_must_be_allowed_by_this_process_cpuset() -> None:
    node0_process = replace(TWO_NODES, allowed_mems=frozenset({0}))
    assert "allows (0)" in refusal("5", node0_process, allow_housekeeping=True)


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        ("8", "CPU 8 is not online on this host"),
        ("reserved[0]", "only positions of `isolated` are known on a running host"),
        ("isolated[x]", "not a CPU list item"),
        ("two", "give isolated, isolated[i], isolated[i-j] or a CPU list such as 2-3,6"),
        ("", "--cpus is empty"),
        ("3-1", "reversed CPU range"),
    ],
)
def test_bad_cpu_specs(cpus: str, expected: str) -> None:
    assert expected in refusal(cpus, allow_housekeeping=True)


def test_fifo_priority_range() -> None:
    assert plan("isolated[0]", fifo=99).fifo == 99
    assert refusal("isolated[0]", fifo=0) == "--fifo 0: SCHED_FIFO priorities are 1 to 99"
    assert "1 to 99" in refusal("isolated[0]", fifo=100)


def test_dry_run_lists_the_steps_in_launch_order() -> None:
    chosen = plan("isolated[0]", ONE_NODE_V1, fifo=5, mlock=True)
    rows = describe(chosen, ["/usr/bin/sleep", "1 2"], "/cache/qc_mlock.so")
    assert rows == [
        ("cpus", f"1: isolated[0] of the cgroup v1 partition {V1_PARTITION} (1)"),
        ("cgroup", f"join {V1_PARTITION}"),
        ("memory", "MPOL_BIND to NUMA node 0"),
        ("affinity", "sched_setaffinity 1"),
        ("scheduling", "SCHED_FIFO priority 5"),
        ("mlock", "RLIMIT_MEMLOCK unlimited; LD_PRELOAD /cache/qc_mlock.so"),
        ("exec", "/usr/bin/sleep '1 2'"),
    ]
    plain = describe(plan("1", ONE_NODE_V1, mem_node="none"), ["true"], None)
    assert ("memory", "not bound (default policy)") in plain
    assert ("scheduling", "unchanged (inherited)") in plain
    assert all(step != "mlock" for step, _ in plain)
