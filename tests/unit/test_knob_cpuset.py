"""Runtime isolation (``cpu.isolation: [cpuset]``) judged on real captures: this 2-CPU VM
(cgroup v1, no systemd) and the 4-CPU lab (cgroup v2, systemd), each untuned and with
``examples/runtime-isolation.yaml`` applied (see tests/data/bundles/README.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.bundles import load_readings

from quietcore.converge.plan import plan_apply, plan_rollback
from quietcore.converge.shell import step_line
from quietcore.drift import SettingResult, compare
from quietcore.knobs import cpuset
from quietcore.knobs.cpuset import CpusetKnob
from quietcore.profile.cpuset import format_ranges
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import resolve
from quietcore.readings import HostRead
from quietcore.steps import ConfineTasks, PinTasks, RemoveCgroup, Run, UnsafeStepError, Write
from quietcore.topology import parse_topology

PROFILE = Path(__file__).resolve().parents[2] / "examples" / "runtime-isolation.yaml"
KNOB = CpusetKnob()


def _results(capture: str) -> dict[str, SettingResult]:
    readings = load_readings(capture)
    topology = parse_topology(readings)
    settings = resolve(load_profile(str(PROFILE)), topology, [KNOB])
    return {result.setting.key: result for result in compare(settings, readings, topology)}


def test_layout_is_read_from_the_host() -> None:
    v1 = parse_topology(load_readings("cpuset-v1-untuned"))
    v2 = parse_topology(load_readings("cpuset-v2-untuned"))
    assert (v1.cpuset_cgroup, v1.systemd) == ("v1", False)
    assert (v2.cpuset_cgroup, v2.systemd) == ("v2", True)


def test_threads_are_parsed_with_the_kernel_s_pins() -> None:
    threads = {thread.tid: thread for thread in cpuset.threads(load_readings("cpuset-v1-untuned"))}
    assert len(threads) > 50
    by_comm = {thread.comm: thread for thread in threads.values()}
    assert by_comm["migration/1"].pinned_by_kernel
    assert by_comm["migration/1"].allowed == {1}
    assert not threads[1].pinned_by_kernel
    assert threads[1].allowed == {0, 1}
    assert threads[1].cpuset == "/"


@pytest.mark.parametrize("capture", ["cpuset-v1-untuned", "cpuset-v2-untuned"])
def test_an_untuned_host_drifts_on_every_key(capture: str) -> None:
    results = _results(capture)
    assert results[cpuset.PARTITION_KEY].status == "drift"
    assert results[cpuset.PARTITION_KEY].actual is None
    tasks = results[cpuset.TASKS_KEY]
    assert tasks.status == "drift"
    assert "movable thread(s) outside the partition may run beyond" in tasks.reason
    assert "(systemd)" in tasks.reason or "(process_api)" in tasks.reason


def test_v1_keys_and_their_values() -> None:
    results = _results("cpuset-v1-untuned")
    assert list(results) == [
        cpuset.OTHERS_KEY,
        cpuset.HOUSEKEEPING_KEY,
        cpuset.ROOT_BALANCE_KEY,
        cpuset.PARTITION_KEY,
        cpuset.EFFECTIVE_KEY,
        cpuset.TASKS_KEY,
    ]
    assert results[cpuset.ROOT_BALANCE_KEY].actual == "1"
    assert results[cpuset.HOUSEKEEPING_KEY].actual is None
    # podman's cpusets, created on this VM by `podman run`, use both CPUs.
    assert results[cpuset.OTHERS_KEY].actual == "/libpod_parent=0-1 /libpod_parent/conmon=0-1"
    assert results[cpuset.OTHERS_KEY].status == "drift"


def test_v2_under_systemd_confines_its_slices() -> None:
    results = _results("cpuset-v2-untuned")
    slices = [key for key in results if key.startswith("cpuset/slice/")]
    assert slices == [
        cpuset.slice_key(unit) for unit in ("init.scope", "system.slice", "user.slice")
    ]
    assert {results[key].actual for key in slices} == {""}
    assert results[cpuset.CONTROLLER_KEY].actual == "off"


@pytest.mark.parametrize("capture", ["cpuset-v1-isolated", "cpuset-v2-isolated"])
def test_an_isolated_host_is_ok_on_every_key(capture: str) -> None:
    results = _results(capture)
    assert {key: result.status for key, result in results.items()} == dict.fromkeys(results, "ok")
    partition = results[cpuset.PARTITION_KEY].actual or ""
    assert partition.endswith(" isolated")


def test_threads_in_the_partition_are_the_workload_and_not_judged() -> None:
    readings = load_readings("cpuset-v1-isolated")
    threads = cpuset.threads(readings)
    inside = [t for t in threads if t.cpuset == "/quietcore-isolated"]
    assert inside, "the capture ran a workload in the partition"
    assert all(t.allowed == {1} for t in inside)
    outside = cpuset.movable_outside(threads)
    assert not {t.tid for t in inside} & {t.tid for t in outside}


def test_placement_text_round_trips() -> None:
    readings = load_readings("cpuset-v1-untuned")
    outside = cpuset.movable_outside(cpuset.threads(readings))
    text = cpuset.format_placement(outside)
    assert cpuset.parse_placement(text) == {t.tid: t.allowed for t in outside}
    assert format_ranges([5, 1, 2, 3, 9, 10]) == "1-3,5,9-10"
    with pytest.raises(ValueError, match="not a thread ID range"):
        cpuset.parse_ids("1-x")
    with pytest.raises(ValueError, match="not a CPUS@TIDS group"):
        cpuset.parse_placement("0-1")


def test_apply_steps_confine_then_partition_on_v1() -> None:
    readings = load_readings("cpuset-v1-untuned")
    topology = parse_topology(readings)
    others = KNOB.steps_to_set(cpuset.OTHERS_KEY, "0", readings, topology)
    # A v1 child must stay within its parent: the child shrinks first.
    assert others == (
        Write("/sys/fs/cgroup/cpuset/libpod_parent/conmon/cpuset.cpus", "0"),
        Write("/sys/fs/cgroup/cpuset/libpod_parent/cpuset.cpus", "0"),
    )
    partition = KNOB.steps_to_set(cpuset.PARTITION_KEY, "1 isolated", readings, topology)
    assert partition[0] == Run(("mkdir", "-p", "/sys/fs/cgroup/cpuset/quietcore-isolated"))
    assert Write("/sys/fs/cgroup/cpuset/quietcore-isolated/cpuset.cpu_exclusive", "1") in partition
    tasks = KNOB.steps_to_set(cpuset.TASKS_KEY, "0", readings, topology)
    assert tasks == (
        ConfineTasks("0", "/quietcore-isolated", "/sys/fs/cgroup/cpuset/quietcore-housekeeping"),
    )
    assert step_line(tasks[0]) == (
        "qc_confine 0 /quietcore-isolated /sys/fs/cgroup/cpuset/quietcore-housekeeping"
    )


def test_v2_slices_are_set_through_systemd() -> None:
    readings = load_readings("cpuset-v2-untuned")
    topology = parse_topology(readings)
    steps = KNOB.steps_to_set(cpuset.slice_key("system.slice"), "0,2", readings, topology)
    argv = ("systemctl", "set-property", "--runtime", "system.slice", "AllowedCPUs=0,2")
    assert steps == (Run(argv, systemd_only=True),)
    with pytest.raises(UnsafeStepError, match="not one quietcore knows"):
        KNOB.steps_to_set(cpuset.slice_key("evil.slice"), "0", readings, topology)


def test_rollback_removes_cgroups_first_and_gives_each_thread_its_cpus_back() -> None:
    loaded = load_profile(str(PROFILE))
    untuned = HostRead("vm", load_readings("cpuset-v1-untuned"), None, 0.1)
    plan = plan_apply(loaded, untuned, "2026-11-24T00:00:00Z")
    assert plan.snapshot is not None
    saved = plan.snapshot.keys[cpuset.TASKS_KEY].before or ""
    before = cpuset.parse_placement(saved)
    isolated = HostRead("vm", load_readings("cpuset-v1-isolated"), None, 0.1)
    rollback = plan_rollback(isolated, plan.snapshot)
    order = [change.key for change in rollback.changes if change.family == "cpuset"]
    assert order.index(cpuset.PARTITION_KEY) < order.index(cpuset.OTHERS_KEY)
    assert order.index(cpuset.HOUSEKEEPING_KEY) < order.index(cpuset.ROOT_BALANCE_KEY)
    assert order[-1] == cpuset.TASKS_KEY
    partition = next(c for c in rollback.changes if c.key == cpuset.PARTITION_KEY)
    assert partition.steps == (
        RemoveCgroup("/sys/fs/cgroup/cpuset/quietcore-isolated", "/sys/fs/cgroup/cpuset"),
    )
    pins = next(c for c in rollback.changes if c.key == cpuset.TASKS_KEY).steps
    assert all(isinstance(step, PinTasks) for step in pins)
    pinned = {tid: step.cpus for step in pins if isinstance(step, PinTasks) for tid in step.tids}
    # Threads of the snapshot still running, not later ones that took a TID of an exited one.
    limit = cpuset.placement_limit(saved)
    assert limit is not None
    alive = cpuset.same_threads(cpuset.threads(load_readings("cpuset-v1-isolated")), limit)
    assert set(pinned) == set(before) & {thread.tid for thread in alive}
    assert len(pinned) > 30
    assert step_line(pins[0]).startswith("qc_pin ")


def test_a_snapshot_placement_is_judged_thread_by_thread() -> None:
    readings = load_readings("cpuset-v1-isolated")
    topology = parse_topology(readings)
    outside = cpuset.movable_outside(cpuset.threads(readings))
    first = outside[0]
    elsewhere = "1" if first.allowed == {0} else "0"
    tasks = next(
        s
        for s in resolve(load_profile(str(PROFILE)), topology, [KNOB])
        if s.key == cpuset.TASKS_KEY
    )
    same = replace(tasks, desired=cpuset.format_placement(outside))
    moved = replace(
        tasks, desired=f"{elsewhere}@{first.tid} " + cpuset.format_placement(outside[1:])
    )
    # A snapshot taken before ``first`` started does not know it: its TID named another thread.
    groups = [item for item in moved.desired.split() if not item.startswith(cpuset.STARTED)]
    earlier = replace(moved, desired=" ".join([*groups, f"started<={first.started - 1}"]))
    judged = compare([same, moved, earlier], readings, topology)
    assert judged[0].status == "ok"
    assert judged[1].status == "drift"
    assert f"{first.tid} ({first.comm})" in judged[1].reason
    assert judged[2].status == "ok"


def test_unsafe_values_are_refused() -> None:
    with pytest.raises(UnsafeStepError):
        ConfineTasks("0; rm -rf /", "/quietcore-isolated")
    with pytest.raises(UnsafeStepError):
        RemoveCgroup("/sys/fs/cgroup/../etc", "/sys/fs/cgroup")
    with pytest.raises(UnsafeStepError):
        PinTasks("0", ())
    readings = load_readings("cpuset-v1-untuned")
    topology = parse_topology(readings)
    with pytest.raises(UnsafeStepError, match="refusing thread placement"):
        KNOB.steps_to_set(cpuset.TASKS_KEY, "0@1-x", readings, topology)
