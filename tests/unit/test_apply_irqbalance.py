"""Converging the irqbalance family: its environment file and its service.

The banned list of ``trading`` on the real lab capture (Debian's /etc/default/irqbalance,
irqbalance running and enabled under systemd), and the real Firecracker captures with the
legacy mask and the list both set (see platform_knob_hosts). RHEL's path is built explicitly.
"""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.irqbalance import (
    BANNED_KEY,
    CONFIG_FILES,
    SERVICE_KEY,
    STATE_COMMAND,
    IrqbalanceKnob,
    environment_file,
)
from quietcore.readings import CommandResult, Readings
from quietcore.steps import ManagedFile, Run, UnsafeStepError

KNOB = IrqbalanceKnob()
DEBIAN, RHEL = CONFIG_FILES
RESTART = Run(("systemctl", "try-restart", "irqbalance.service"), systemd_only=True)


def _banned() -> Setting:
    return lab_results("irqbalance")[BANNED_KEY].setting


def _with_file(readings: Readings, path: str, content: str) -> Readings:
    return Readings({**readings.files, path: tuple(content.splitlines())}, readings.commands)


def _render(readings: Readings, setting: Setting | None = None) -> ManagedFile:
    [file] = KNOB.native_files([setting or _banned()], readings, lab_topology())
    return file


def test_lab_file_keeps_debians_lines_and_ends_with_the_list() -> None:
    original = lab_readings().lines(DEBIAN)
    assert original is not None
    file = _render(lab_readings())
    assert (file.path, file.activate, file.reboot) == (DEBIAN, (RESTART,), False)
    lines = file.content.splitlines()
    assert lines[: len(original)] == list(original)
    assert lines[len(original) :] == [
        "",
        "# quietcore: IRQBALANCE_BANNED_CPULIST below is owned by quietcore, from "
        "irq.irqbalance (builtin:cpu-partitioning.yaml:33);",
        "# quietcore: other banned-CPU lines were removed. `quietcore rollback` restores "
        "this file.",
        "IRQBALANCE_BANNED_CPULIST=1,3",
    ]
    assert set(KNOB.managed_paths) == {DEBIAN, RHEL}


def test_applied_file_reads_back_as_desired_and_renders_the_same() -> None:
    first = _render(lab_readings())
    after = _with_file(lab_readings(), DEBIAN, first.content)
    seen = KNOB.observe(_banned(), after, lab_topology())
    assert (seen.status, seen.actual) == (None, _banned().desired)
    assert _render(after) == first


def test_legacy_mask_and_list_are_both_replaced() -> None:
    # Real: the Debian file with IRQBALANCE_BANNED_CPUS=2 and IRQBALANCE_BANNED_CPULIST=0.
    readings = load_readings("platform-vm-irqbalance-legacy")
    vm = capture_topology("platform-vm-irqbalance-legacy")
    [setting] = KNOB.desired(context(CAPTURE_PROFILE, vm))
    [file] = KNOB.native_files([setting], readings, vm)
    variables = environment_file(file.content.splitlines())
    assert "IRQBALANCE_BANNED_CPUS" not in variables
    assert variables["IRQBALANCE_BANNED_CPULIST"] == "1"
    banned = [line for line in file.content.splitlines() if "BANNED_CPU" in line]
    assert [line for line in banned if not line.startswith("#")] == ["IRQBALANCE_BANNED_CPULIST=1"]
    after = _with_file(readings, DEBIAN, file.content)
    assert KNOB.native_files([setting], after, vm) == (file,)


def test_which_file_is_written() -> None:
    state = {STATE_COMMAND: CommandResult(("installed=/usr/sbin/irqbalance",), 0)}
    rhel = Readings({RHEL: ('IRQBALANCE_ARGS=""',)}, state)
    assert _render(rhel).content.splitlines()[0] == 'IRQBALANCE_ARGS=""'
    assert _render(rhel).path == RHEL
    # Installed without any environment file: Debian's, holding only quietcore's lines.
    file = _render(Readings({}, state))
    assert file.path == DEBIAN
    assert file.content.splitlines()[-1] == "IRQBALANCE_BANNED_CPULIST=1,3"
    assert file.content.startswith("# quietcore:")
    # Not installed (the Firecracker VM, real): nothing to write.
    assert (
        KNOB.native_files([_banned()], load_readings("platform-vm-default"), lab_topology()) == ()
    )
    assert KNOB.native_files([], lab_readings(), lab_topology()) == ()


def test_service_steps_and_rollback_to_what_was_read() -> None:
    disabled = profile(cpu={"reserved": "0,2", "isolated": "1,3"}, irq={"irqbalance": "disabled"})
    [setting] = KNOB.desired(context(disabled, lab_topology(), reserved=frozenset({0, 2})))
    assert setting.key == SERVICE_KEY
    readings = lab_readings()
    assert KNOB.steps_to_set(SERVICE_KEY, setting.desired, readings, lab_topology()) == (
        Run(("systemctl", "disable", "--now", "irqbalance.service"), systemd_only=True),
    )
    # The lab runs irqbalance, enabled at boot: rollback starts and enables it again.
    before = KNOB.observe(setting, readings, lab_topology()).actual
    assert before == "active, enabled at boot"
    assert KNOB.steps_to_set(SERVICE_KEY, before, readings, lab_topology()) == (
        Run(("systemctl", "enable", "--now", "irqbalance.service"), systemd_only=True),
    )
    assert KNOB.steps_to_set(SERVICE_KEY, "active", readings, lab_topology()) == (
        Run(("systemctl", "disable", "irqbalance.service"), systemd_only=True),
        Run(("systemctl", "start", "irqbalance.service"), systemd_only=True),
    )
    assert KNOB.steps_to_set(SERVICE_KEY, None, readings, lab_topology()) == ()
    # The banned list is the file's: the engine restores the file byte for byte.
    assert KNOB.steps_to_set(BANNED_KEY, "", readings, lab_topology()) == ()
    assert not KNOB.boot_script


@pytest.mark.parametrize("cpus", ["1,3\nIRQBALANCE_ARGS=--x", "1;reboot", "$(reboot)", "1 3"])
def test_unsafe_banned_lists_are_refused(cpus: str) -> None:
    setting = Setting(BANNED_KEY, "irqbalance", cpus, "irq.irqbalance")
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([setting], lab_readings(), lab_topology())


def test_unknown_keys_and_service_states_are_refused() -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(SERVICE_KEY, "masked; reboot", lab_readings(), lab_topology())
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set("irqbalance/args", "x", lab_readings(), lab_topology())


def test_a_newline_in_the_source_cannot_add_a_line() -> None:
    setting = Setting(BANNED_KEY, "irqbalance", "1", "irq.irqbalance", "x.yaml\nIRQBALANCE_X=1:3")
    variables = environment_file(_render(lab_readings(), setting).content.splitlines())
    assert "IRQBALANCE_X" not in variables
