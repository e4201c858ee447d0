"""Plans computed from the real 4-CPU, 2-node lab capture: what apply would do, that doing it
leaves nothing to do, and that rollback undoes exactly what the snapshot saved.

"Doing it" is simulated on the captured readings: every ``Write`` step and every file the plan
writes replaces what the bundle read, as the host would show it at the next read. Keys set by
running a program (ethtool) cannot be simulated and are left out; the lab tests run them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.unit.lab_apply_hosts import lab_readings

from quietcore.converge import paths
from quietcore.converge.plan import (
    HostPlan,
    check_key,
    plan_apply,
    plan_rollback,
)
from quietcore.converge.snapshot import from_json, to_json
from quietcore.knobs.irqbalance import STATE_COMMAND, daemon_state
from quietcore.profile.load import load_profile
from quietcore.readings import CommandResult, HostRead, Readings
from quietcore.steps import Write
from quietcore.topology import parse_topology

NOW = "2026-11-23T12:00:00+00:00"


def _after(readings: Readings, plan: HostPlan) -> Readings:
    """The readings the host would give after ``plan`` ran (runtime writes and files)."""
    files = dict(readings.files)
    for change in plan.now:
        for step in change.steps:
            if isinstance(step, Write):
                files[step.path] = (step.value,)
    for file in plan.files:
        if file.file is not None:
            files[file.path] = tuple(file.file.content.removesuffix("\n").split("\n"))
        elif file.action == "restore":  # from the backup: what the host had before quietcore
            files[file.path] = lab_readings().files[file.path]
        else:
            files.pop(file.path, None)
    if plan.snapshot is not None:
        files[paths.SNAPSHOT] = tuple(to_json(plan.snapshot).removesuffix("\n").split("\n"))
    return replace(readings, files=files)


def _by_program(plan: HostPlan) -> set[str]:
    return {c.key for c in plan.now if not all(isinstance(s, Write) for s in c.steps)}


def _irqbalance_runs(readings: Readings) -> bool:
    state = daemon_state(readings)
    return state is not None and state.running


def _with_irqbalance(readings: Readings, active: str) -> Readings:
    """``readings`` with irqbalance's state answer saying ``active=<active>``."""
    result = readings.commands[STATE_COMMAND]
    lines = tuple(
        f"active={active}" if line.startswith("active=") else line for line in result.lines
    )
    commands = {**readings.commands, STATE_COMMAND: CommandResult(lines, result.returncode)}
    return replace(readings, commands=commands)


def _plan(profile: str, readings: Readings) -> HostPlan:
    return plan_apply(load_profile(profile), HostRead("lab", readings, None, 0.0), NOW)


@pytest.fixture(scope="module")
def trading() -> HostPlan:
    return _plan("trading", lab_readings())


def test_trading_plan_sets_runtime_keys_now_and_kernel_arguments_at_boot(
    trading: HostPlan,
) -> None:
    kinds = {change.key: change.kind for change in trading.changes}
    assert kinds["hugepages/node0/1048576kB"] == "now"
    assert kinds["isolation/isolated"] == "effect"
    assert trading.needs_reboot
    assert trading.snapshot is not None and trading.existing is None
    written = {file.path for file in trading.files}
    assert {paths.BOOT_SCRIPT, paths.BOOT_UNIT, paths.BOOT_WANTS} <= written


def test_every_drifted_key_is_planned_and_ok_keys_are_not(trading: HostPlan) -> None:
    planned = {change.key for change in trading.changes}
    drifted = {
        result.setting.key
        for result in trading.audit.results
        if result.status in ("drift", "missing")
    }
    assert planned == drifted


def test_a_second_plan_after_apply_has_nothing_to_do(trading: HostPlan) -> None:
    again = _plan("trading", _after(lab_readings(), trading))
    assert again.files == ()
    assert {change.key for change in again.now} == _by_program(trading)
    assert again.snapshot is None
    # What is left only a reboot can make true.
    left = {change.kind for change in again.changes if change.key not in _by_program(trading)}
    assert left <= {"at-boot", "effect", "manual"}


def test_snapshot_holds_the_values_before_the_first_change(trading: HostPlan) -> None:
    snapshot = trading.snapshot
    assert snapshot is not None
    actual = {r.setting.key: r.actual for r in trading.audit.results}
    for key, saved in snapshot.keys.items():
        assert saved.before == actual[key]
    assert from_json(to_json(snapshot), "test") == snapshot


def test_a_later_profile_grows_the_snapshot_but_keeps_first_values(
    trading: HostPlan, tmp_path: Path
) -> None:
    applied = _after(lab_readings(), trading)
    # The capture read only trading's sysctls; give the host the one trading does not touch.
    files = {**applied.files, "/proc/sys/vm/max_map_count": ("65530",)}
    applied = replace(applied, files=files)
    later = tmp_path / "later.yaml"
    # One key trading does not touch, and one it already changed, set to something else.
    later.write_text(
        "name: later\nkernel:\n  sysctl:\n    vm.max_map_count: 262144\n    vm.swappiness: 1\n"
    )
    other = plan_apply(load_profile(str(later)), HostRead("lab", applied, None, 0.0), NOW)
    first = trading.snapshot
    assert first is not None and other.existing == first
    assert other.snapshot is not None
    assert set(other.snapshot.keys) - set(first.keys) == {"sysctl/vm.max_map_count"}
    assert other.snapshot.keys["sysctl/vm.max_map_count"].before == "65530"
    for key, saved in first.keys.items():
        assert other.snapshot.keys[key] == saved
    # Changed again, vm.swappiness keeps its value from before quietcore, not trading's.
    assert "sysctl/vm.swappiness" in {change.key for change in other.now}
    assert (
        other.snapshot.keys["sysctl/vm.swappiness"].before
        == first.keys["sysctl/vm.swappiness"].before
        != "1"
    )


def test_rollback_plan_restores_every_changed_key_and_removes_every_file(
    trading: HostPlan,
) -> None:
    snapshot = trading.snapshot
    assert snapshot is not None
    applied = _after(lab_readings(), trading)
    back = plan_rollback(HostRead("lab", applied, None, 0.0), snapshot)
    restored_now = {change.key for change in back.now} - _by_program(trading)
    changed_now = {change.key for change in trading.now} - _by_program(trading)
    # irqbalance runs on the lab (trading only bans the isolated CPUs): IRQs are its to place.
    assert _irqbalance_runs(applied)
    changed_now -= {key for key in changed_now if key.endswith("/smp_affinity_list")}
    assert restored_now == changed_now
    created = {f.path for f in trading.files if f.action == "create"}
    assert {f.path for f in back.files if f.action == "remove"} == created
    after_rollback = _after(applied, back)
    topology = parse_topology(after_rollback)
    for key, saved in snapshot.keys.items():
        check = check_key(key, saved, after_rollback, topology)
        if key not in _by_program(trading):
            assert check.restored or saved.reboot, (key, saved, check.actual)


def test_a_refused_profile_plans_nothing(tmp_path: Path) -> None:
    profile = tmp_path / "absent-cpu.yaml"
    profile.write_text('name: absent-cpu\ncpu:\n  reserved: "0"\n  isolated: 2-99\n')
    loaded = load_profile(str(profile))
    plan = plan_apply(loaded, HostRead("lab", lab_readings(), None, 0.0), NOW)
    assert plan.error is not None and "99" in plan.error
    assert plan.action_count == 0 and plan.snapshot is None


def test_irq_affinity_is_left_to_irqbalance_when_it_runs(trading: HostPlan) -> None:
    """irqbalance places IRQs on its own: the snapshot's affinity of the moment is not a value
    rollback can promise, so while irqbalance runs the IRQ keys count as handed back."""
    snapshot = trading.snapshot
    assert snapshot is not None
    readings, topology = lab_readings(), parse_topology(lab_readings())
    assert _irqbalance_runs(readings)  # the lab capture: irqbalance active
    key = next(k for k in snapshot.keys if k.endswith("/smp_affinity_list"))
    moved = replace(snapshot.keys[key], before="0")  # somewhere the IRQ is not now
    assert check_key(key, moved, readings, topology).restored
    stopped = _with_irqbalance(readings, "inactive")
    assert not _irqbalance_runs(stopped)
    assert not check_key(key, moved, stopped, topology).restored
    # irqbalance never sets the mask new IRQs start with: that one is always restored.
    default = replace(snapshot.keys["irq/default_smp_affinity"], before="0")
    assert not check_key("irq/default_smp_affinity", default, readings, topology).restored
