"""Converging the systemd family: a system.conf.d drop-in, read back as systemd reads it.

``trading`` on the real lab capture (Debian 12's /etc/systemd/system.conf with CPUAffinity
commented out, systemd as PID 1 on CPUs 0-3); the drop-ins of other directories are built.
"""

from __future__ import annotations

import pytest
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.systemd import CONFIG_KEY, DROP_IN, EFFECT_KEY, SystemdKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError

KNOB = SystemdKnob()


def _settings() -> list[Setting]:
    return [r.setting for r in lab_results("systemd").values()]


def _with(readings: Readings, files: dict[str, str]) -> Readings:
    added = {path: tuple(text.splitlines()) for path, text in files.items()}
    return Readings({**readings.files, **added}, readings.commands)


def test_lab_drop_in_resets_then_sets_the_reserved_cpus() -> None:
    settings = _settings()
    effect = lab_results("systemd")[EFFECT_KEY].setting
    assert effect.effect and effect.reboot_required
    assert lab_results("systemd")[CONFIG_KEY].setting.reboot_required  # plan: at-boot
    [file] = KNOB.native_files(settings, lab_readings(), lab_topology())
    assert (file.path, file.activate, file.reboot) == (DROP_IN, (), True)
    assert KNOB.managed_paths == (DROP_IN,)
    assert file.content.splitlines()[-3:] == ["[Manager]", "CPUAffinity=", "CPUAffinity=0,2"]
    assert "containers.systemd.cpu_affinity (builtin:cpu-partitioning.yaml:73)" in file.content


def test_the_drop_in_reads_back_as_desired_and_renders_the_same() -> None:
    config = lab_results("systemd")[CONFIG_KEY].setting
    assert KNOB.observe(config, lab_readings(), lab_topology()).actual == "0-3"
    [file] = KNOB.native_files(_settings(), lab_readings(), lab_topology())
    after = _with(lab_readings(), {DROP_IN: file.content})
    assert KNOB.observe(config, after, lab_topology()).actual == "0,2"
    assert KNOB.native_files(list(reversed(_settings())), after, lab_topology()) == (file,)


def test_the_reset_wins_over_earlier_files_and_a_later_one_still_wins() -> None:
    # Built: /usr/lib's drop-in merges CPU 3 in before quietcore's; /etc's 99- comes after.
    config = lab_results("systemd")[CONFIG_KEY].setting
    [file] = KNOB.native_files(_settings(), lab_readings(), lab_topology())
    earlier = "/usr/lib/systemd/system.conf.d/50-vendor.conf"
    readings = _with(lab_readings(), {earlier: "[Manager]\nCPUAffinity=3\n", DROP_IN: file.content})
    assert KNOB.observe(config, readings, lab_topology()).actual == "0,2"
    later = "/etc/systemd/system.conf.d/99-site.conf"
    readings = _with(readings, {later: "[Manager]\nCPUAffinity=1\n"})
    assert KNOB.observe(config, readings, lab_topology()).actual == "0-2"


def test_nothing_changes_at_runtime() -> None:
    # systemd applies CPUAffinity at boot; rollback removes the file (the engine does that).
    for result in lab_results("systemd").values():
        key = result.setting.key
        assert KNOB.steps_to_set(key, result.actual, lab_readings(), lab_topology()) == ()
        assert KNOB.steps_to_set(key, None, lab_readings(), lab_topology()) == ()
    assert KNOB.native_files([], lab_readings(), lab_topology()) == ()


@pytest.mark.parametrize("cpus", ["", "0\nCPUAffinity=1", "0;2", "0-x"])
def test_unsafe_or_empty_cpu_lists_are_refused(cpus: str) -> None:
    setting = Setting(CONFIG_KEY, "systemd", cpus, "containers.systemd.cpu_affinity")
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([setting], lab_readings(), lab_topology())


def test_a_newline_in_the_source_stays_in_the_comment() -> None:
    field = "containers.systemd.cpu_affinity"
    setting = Setting(CONFIG_KEY, "systemd", "0", field, "x.yaml\n[Manager]\nCPUAffinity=1")
    [file] = KNOB.native_files([setting], lab_readings(), lab_topology())
    assert [line for line in file.content.splitlines() if not line.startswith("#")] == [
        "[Manager]",
        "CPUAffinity=",
        "CPUAffinity=0",
    ]
