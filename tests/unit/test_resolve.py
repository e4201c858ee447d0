"""Resolving profiles against a host: CPU plans, CPU tokens, host-level refusals.

Host-level bad profiles (tests/data/bad_profiles/host_*.yaml) are resolved against the real
topology captured on this 2-CPU Firecracker VM. Layouts it cannot show (two NUMA nodes, SMT,
a memory-only node) are ``Topology`` values built explicitly below.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from tests.bundles import load_readings

from quietcore.knobs.sysctl import SysctlKnob
from quietcore.profile.cpuplan import CpuPlan, plan_cpus, resolve_cpu_text
from quietcore.profile.errors import ResolveError
from quietcore.profile.load import list_builtin, load_profile
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.resolve import refuse, resolve
from quietcore.profile.schema import Profile
from quietcore.topology import Cpu, NumaNode, Topology, parse_topology

BAD = Path(__file__).parents[1] / "data" / "bad_profiles"
GIB_KIB = 1024 * 1024
MARKER = "# <- refused"

# The field each host-level bad profile is refused on; the line carries MARKER.
EXPECTED_FIELD = {
    "host_cpu_not_present": "cpu.isolated",
    "host_hugepage_node_missing": "hugepages.pages.0.node",
    "host_hugepage_size_unsupported": "hugepages.pages.0.size",
    "host_hugepages_beyond_host_memory": "hugepages.pages.0.count",
    "host_hugepages_beyond_node_memory": "hugepages.pages.0.count",
    "host_isolate_every_cpu": "cpu.isolated",
    "host_jitter_cpus_empty": "verify.jitter.cpus",
    "host_per_numa_node_too_large": "cpu.reserved.per_numa_node",
    "host_reserved_cpu_not_present": "cpu.reserved",
    "host_reserved_isolated_overlap": "cpu.isolated",
    "host_workqueue_mask_without_reserved": "kernel.workqueue_mask",
}


@pytest.fixture(scope="module")
def firecracker() -> Topology:
    return parse_topology(load_readings("firecracker-2cpu-topology"))


def _loaded(data: dict[str, object]) -> LoadedProfile:
    """A profile given in the test, with no file behind it (so no lines)."""
    return LoadedProfile(Profile.model_validate(data), {}, ("<test>",), "")


def _refusal(loaded: LoadedProfile, topology: Topology) -> ResolveError:
    with pytest.raises(ResolveError) as caught:
        resolve(loaded, topology)
    return caught.value


# --- Host-level bad profiles on the captured host ---------------------------------------------


def test_every_host_bad_profile_has_an_expectation() -> None:
    assert sorted(p.stem for p in BAD.glob("host_*.yaml")) == sorted(EXPECTED_FIELD)
    assert len(EXPECTED_FIELD) >= 6


@pytest.mark.parametrize("stem", sorted(EXPECTED_FIELD))
def test_host_bad_profile_refused_with_file_line_and_field(
    stem: str, firecracker: Topology
) -> None:
    path = BAD / f"{stem}.yaml"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# "), "first line must say what is wrong"
    marked = [number for number, line in enumerate(lines, 1) if line.endswith(MARKER)]
    loaded = load_profile(str(path))
    problem = refuse(loaded, _refusal(loaded, firecracker)).problems[0]
    assert (problem.file, problem.line, problem.field) == (str(path), *marked, EXPECTED_FIELD[stem])
    assert problem.message


def test_builtin_profiles_resolve_on_the_captured_host(firecracker: Topology) -> None:
    for builtin in list_builtin():
        settings = resolve(load_profile(builtin.name), firecracker)
        assert len({setting.key for setting in settings}) == len(settings), builtin.name


# --- CPU plans on the captured host -----------------------------------------------------------


def test_no_cpu_section_partitions_nothing(firecracker: Topology) -> None:
    plan = plan_cpus(Profile.model_validate({"name": "plain"}), firecracker)
    assert plan == CpuPlan(online=frozenset({0, 1}), reserved=frozenset(), isolated=frozenset())


def test_per_numa_node_on_the_captured_host(firecracker: Topology) -> None:
    profile = Profile.model_validate(
        {"name": "p", "cpu": {"reserved": {"per_numa_node": 1}, "isolated": "rest"}}
    )
    plan = plan_cpus(profile, firecracker)
    assert plan.reserved == {0}
    assert plan.isolated == {1}


def test_reserving_everything_leaves_nothing_to_isolate(firecracker: Topology) -> None:
    profile = Profile.model_validate({"name": "p", "cpu": {"reserved": "all", "isolated": "rest"}})
    with pytest.raises(ResolveError) as caught:
        plan_cpus(profile, firecracker)
    assert caught.value.field == "cpu.isolated"


# --- CPU tokens -------------------------------------------------------------------------------

PLAN = CpuPlan(online=frozenset(range(8)), reserved=frozenset({0, 4}), isolated=frozenset({2, 3}))
UNPARTITIONED = CpuPlan(online=frozenset({0, 1}), reserved=frozenset(), isolated=frozenset())


@pytest.mark.parametrize(
    ("spec", "cpus"),
    [
        ("reserved", {0, 4}),
        ("isolated", {2, 3}),
        ("rest", {1, 2, 3, 5, 6, 7}),
        ("all", set(range(8))),
        ("1-2,7", {1, 2, 7}),
    ],
)
def test_resolve_cpu_text(spec: str, cpus: set[int]) -> None:
    assert resolve_cpu_text(spec, PLAN) == cpus


@pytest.mark.parametrize(
    ("spec", "needs"), [("reserved", "cpu.reserved"), ("rest", "cpu.reserved")]
)
def test_tokens_without_a_partition_name_what_is_missing(spec: str, needs: str) -> None:
    with pytest.raises(ResolveError) as caught:
        resolve_cpu_text(spec, UNPARTITIONED)
    assert caught.value.field == needs
    assert needs in caught.value.message


def test_isolated_without_isolation_is_refused() -> None:
    with pytest.raises(ResolveError, match=r"cpu\.isolated is not declared"):
        resolve_cpu_text("isolated", UNPARTITIONED)


def test_all_needs_no_partition() -> None:
    assert resolve_cpu_text("all", UNPARTITIONED) == {0, 1}


def test_list_with_offline_cpus_is_refused() -> None:
    with pytest.raises(ResolveError, match=r"CPUs 8-9 not online"):
        resolve_cpu_text("6-9", PLAN)


def test_cpu_text_field_is_named_on_refusal(firecracker: Topology) -> None:
    loaded = _loaded(
        {
            "name": "p",
            "cpu": {"reserved": "0", "isolated": "1"},
            "network": {"interfaces": [{"match": "eth*"}, {"match": "ens*", "rps": "0-3"}]},
        }
    )
    error = _refusal(loaded, firecracker)
    assert error.field == "network.interfaces.1.rps"
    assert "CPUs 2-3" in error.message


# --- Two sockets, SMT, a memory-only node (built explicitly) ----------------------------------


def _host(cores_by_node: dict[int, list[tuple[int, ...]]], mem_gib: int = 64) -> Topology:
    """One package per node; each core a tuple of its SMT threads. A node with no cores is
    memory-only."""
    cpus = {
        cpu: Cpu(cpu, core_id, node, node, frozenset(threads))
        for node, cores in cores_by_node.items()
        for core_id, threads in enumerate(cores)
        for cpu in threads
    }
    nodes = {
        node: NumaNode(node, frozenset(c for t in cores for c in t), mem_gib * GIB_KIB)
        for node, cores in cores_by_node.items()
    }
    return Topology(
        online=frozenset(cpus),
        possible_count=len(cpus),
        cpus=cpus,
        nodes=nodes,
        hugepage_sizes_kib=(2048, GIB_KIB),
        interfaces={},
        irqs=(),
        model="test",
        flags=frozenset(),
        hypervisor=None,
        kernel_release="test",
        present=frozenset(cpus),
    )


# Intel-style numbering: threads N and N+8; socket 0 has cores 0-3, socket 1 cores 4-7.
SMT = _host(
    {
        0: [(0, 8), (1, 9), (2, 10), (3, 11)],
        1: [(4, 12), (5, 13), (6, 14), (7, 15)],
    }
)


def _cpu(**section: object) -> Profile:
    return Profile.model_validate({"name": "p", "cpu": section})


def test_per_numa_node_takes_whole_cores() -> None:
    plan = plan_cpus(_cpu(reserved={"per_numa_node": 1}, isolated="rest"), SMT)
    assert plan.reserved == {0, 8, 4, 12}
    assert plan.isolated == SMT.online - {0, 8, 4, 12}


def test_per_numa_node_takes_cpus_when_smt_may_split() -> None:
    plan = plan_cpus(_cpu(reserved={"per_numa_node": 2}, isolated="rest", smt="split"), SMT)
    assert plan.reserved == {0, 1, 4, 5}


def test_per_numa_node_lowest_core_ids_first() -> None:
    # Core ids deliberately not in CPU order: core 0 of node 0 is CPUs 3 and 7.
    host = _host({0: [(3, 7), (0, 4), (1, 5), (2, 6)]})
    plan = plan_cpus(_cpu(reserved={"per_numa_node": 1}, isolated="rest"), host)
    assert plan.reserved == {3, 7}


def test_per_numa_node_skips_memory_only_nodes() -> None:
    host = _host({0: [(0, 2), (1, 3)], 1: []})
    plan = plan_cpus(_cpu(reserved={"per_numa_node": 1}, isolated="rest"), host)
    assert plan.reserved == {0, 2}
    assert plan.isolated == {1, 3}


def test_per_numa_node_larger_than_a_node() -> None:
    with pytest.raises(ResolveError, match=r"node 0 has 4") as caught:
        plan_cpus(_cpu(reserved={"per_numa_node": 5}, isolated="rest"), SMT)
    assert caught.value.field == "cpu.reserved.per_numa_node"


def test_rest_after_half_a_core_splits_it() -> None:
    with pytest.raises(ResolveError, match=r"isolated CPU 8 .* reserved CPU 0") as caught:
        plan_cpus(_cpu(reserved="0", isolated="rest"), SMT)
    assert caught.value.field == "cpu.reserved"


def test_isolated_list_splitting_a_core() -> None:
    with pytest.raises(ResolveError, match=r"CPU 9 .* CPU 1") as caught:
        plan_cpus(_cpu(reserved="0-1,8", isolated="9"), SMT)
    assert caught.value.field == "cpu.isolated"


def test_split_cores_allowed_when_the_profile_asks() -> None:
    plan = plan_cpus(_cpu(reserved="0", isolated="rest", smt="split"), SMT)
    assert 8 in plan.isolated


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ({"reserved": "0,8", "isolated": "0-15"}, "cpu.isolated", "every online CPU"),
        ({"reserved": "0,8", "isolated": "0,8"}, "cpu.isolated", "CPUs 0,8 would be both"),
        ({"reserved": "0,8", "isolated": "16"}, "cpu.isolated", "CPU 16 not present"),
        ({"reserved": "0-16"}, "cpu.reserved", "CPU 16 not present"),
    ],
)
def test_impossible_partitions(section: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ResolveError, match=message) as caught:
        plan_cpus(_cpu(**section), SMT)
    assert caught.value.field == field


def test_offline_and_absent_cpus_are_told_apart() -> None:
    host = replace(_host({0: [(0,), (1,)]}), present=frozenset({0, 1, 2}))
    with pytest.raises(ResolveError, match=r"CPU 3 not present and CPU 2 offline"):
        plan_cpus(_cpu(reserved="0", isolated="2-3"), host)


# --- Hugepages against node memory ------------------------------------------------------------


def _pages(*pools: dict[str, object]) -> LoadedProfile:
    return _loaded({"name": "p", "hugepages": {"pages": list(pools)}})


def test_hugepages_add_up_per_node() -> None:
    def pools(two_mb_gib: int) -> LoadedProfile:
        return _pages(
            {"size": "1G", "count": 40, "node": 0},
            {"size": "1G", "count": 20, "node": 1},
            {"size": "2M", "count": two_mb_gib * 512, "node": 0},
        )

    resolve(pools(24), SMT)  # 40 + 24 GiB: exactly node 0's 64 GiB
    error = _refusal(pools(25), SMT)
    assert error.field == "hugepages.pages.2.count"
    assert re.search(r"65\.0 GiB .* 64\.0 GiB of memory of node 0", error.message)


def test_host_wide_hugepages_count_every_node() -> None:
    resolve(_pages({"size": "1G", "count": 100}), SMT)  # 100 GiB over two 64 GiB nodes
    too_much = _pages({"size": "1G", "count": 100}, {"size": "2M", "count": 29 * 512, "node": 1})
    error = _refusal(too_much, SMT)
    assert error.field == "hugepages.pages.1.count"
    assert "of the host" in error.message


def test_default_size_the_host_lacks() -> None:
    loaded = _loaded({"name": "p", "hugepages": {"default_size": "16G"}})
    assert _refusal(loaded, SMT).field == "hugepages.default_size"


# --- Settings ---------------------------------------------------------------------------------


def test_two_settings_for_one_key_are_refused(firecracker: Topology) -> None:
    # The sysctl family registered twice: every key it makes is made twice.
    loaded = _loaded({"name": "p", "kernel": {"sysctl": {"vm.stat_interval": 10}}})
    assert len(resolve(loaded, firecracker, (SysctlKnob(),))) == 1
    with pytest.raises(ResolveError, match=r"sysctl/vm\.stat_interval") as caught:
        resolve(loaded, firecracker, (SysctlKnob(), SysctlKnob()))
    assert caught.value.field == "kernel.sysctl.vm.stat_interval"


def test_refuse_points_at_the_declaring_line() -> None:
    loaded = LoadedProfile(
        Profile.model_validate({"name": "p"}),
        {"cpu": ("a.yaml", 3), "cpu.isolated": ("a.yaml", 5)},
        ("a.yaml",),
        "",
    )
    problem = refuse(loaded, ResolveError("cpu.isolated", "why")).problems[0]
    assert (problem.file, problem.line, problem.field, problem.message) == (
        "a.yaml",
        5,
        "cpu.isolated",
        "why",
    )
    nearest = refuse(loaded, ResolveError("cpu.reserved.per_numa_node", "why")).problems[0]
    assert (nearest.file, nearest.line) == ("a.yaml", 3)
