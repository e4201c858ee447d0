"""Converging the cmdline family: the GRUB drop-in on Debian hosts, grubby on RHEL-like ones.

The settings are ``trading``'s on the real lab capture (see lab_apply_hosts). That capture
predates the boot-loader reading, so the answer of a Debian 12 host with GRUB (the lab VM has
one, see the bundles README) or of a RHEL host is built explicitly; the Firecracker VM's real
answer (neither tool) is in ``apply-vm-default``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.bundles import load_readings
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.cmdline import (
    BOOT_COMMAND,
    GRUB_DROP_IN,
    PROC_CMDLINE,
    CmdlineKnob,
    boot_loader,
    kernel_arguments,
    last_argument,
)
from quietcore.readings import CommandResult, Readings
from quietcore.steps import Run, UnsafeStepError

KNOB = CmdlineKnob()
DEBIAN = CommandResult(("tool=update-grub",), 0)
RHEL = CommandResult(("tool=grubby", "bls=yes"), 0)


def _host(answer: CommandResult, **files: tuple[str, ...]) -> Readings:
    """The lab capture with a boot-loader answer (and files) added."""
    readings = lab_readings()
    return Readings({**readings.files, **files}, {**readings.commands, BOOT_COMMAND: answer})


def _arguments() -> list[Setting]:
    return [r.setting for r in lab_results("cmdline").values() if not r.setting.effect]


def test_effect_keys_are_effects_and_set_nothing() -> None:
    effects = {k: r.setting for k, r in lab_results("cmdline").items() if r.setting.effect}
    assert set(effects) == {"isolation/isolated", "isolation/nohz_full"}
    for key in effects:
        assert KNOB.steps_to_set(key, "1,3", _host(RHEL), lab_topology()) == ()
    assert all(s.reboot_required for s in _arguments())


def test_boot_loader_tells_grub_and_grubby_apart() -> None:
    assert boot_loader(load_readings("apply-vm-default")) is None  # real: neither tool
    assert boot_loader(lab_readings()) is None  # not read
    assert boot_loader(_host(DEBIAN)) == "grub"
    assert boot_loader(_host(RHEL)) == "grubby"
    both = CommandResult(("tool=update-grub", "tool=grubby"), 0)
    assert boot_loader(_host(both)) == "grub"  # grubby installed on Debian: GRUB still boots
    both_bls = CommandResult((*both.lines, "bls=yes"), 0)
    assert boot_loader(_host(both_bls)) == "grubby"


def test_debian_host_gets_the_grub_drop_in_and_no_runtime_step() -> None:
    readings = _host(DEBIAN)
    [file] = KNOB.native_files(_arguments(), readings, lab_topology())
    assert file.path == GRUB_DROP_IN == KNOB.managed_paths[0]
    assert file.activate == (Run(("update-grub",)),)
    assert file.reboot
    lines = file.content.splitlines()
    assert lines[-1] == (
        'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT default_hugepagesz=1G '
        "intel_pstate=disable irqaffinity=0,2 isolcpus=managed_irq,domain,1,3 nohz=on "
        "nohz_full=1,3 "
        "nosoftlockup rcu_nocbs=1,3 rcupdate.rcu_normal_after_boot=1 "
        'rcutree.nohz_full_patience_delay=1000 skew_tick=1 tsc=reliable"'
    )
    assert "#   isolcpus=managed_irq,domain,1,3: cpu.isolation.0 (builtin:trading.yaml:20)" in lines
    assert "#   skew_tick=1: kernel.cmdline.0 (builtin:cpu-partitioning.yaml:52)" in lines
    assert all(line.startswith("#") for line in lines[:-1])
    for setting in _arguments():
        assert KNOB.steps_to_set(setting.key, setting.desired, readings, lab_topology()) == ()


def test_the_shell_sees_every_argument_last(tmp_path: Path) -> None:
    # grub-mkconfig sources /etc/default/grub, then the drop-ins: do the same with sh.
    [file] = KNOB.native_files(_arguments(), _host(DEBIAN), lab_topology())
    drop_in = tmp_path / "90-quietcore.cfg"
    drop_in.write_text(file.content)
    script = f'GRUB_CMDLINE_LINUX_DEFAULT="quiet skew_tick=0"; . "{drop_in}"; '
    script += 'printf %s "$GRUB_CMDLINE_LINUX_DEFAULT"'
    value = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    arguments = kernel_arguments(value.stdout)
    assert arguments[:2] == ["quiet", "skew_tick=0"]
    for setting in _arguments():
        name = setting.key.removeprefix("cmdline/")
        assert last_argument(arguments, name) == setting.desired


def test_rendering_is_deterministic_and_idempotent() -> None:
    readings = _host(DEBIAN)
    [first] = KNOB.native_files(_arguments(), readings, lab_topology())
    # After apply the host also has the file; the settings may come in any order.
    after = _host(DEBIAN, **{GRUB_DROP_IN: tuple(first.content.splitlines())})
    [again] = KNOB.native_files(list(reversed(_arguments())), after, lab_topology())
    assert again == first


def test_rhel_host_runs_grubby_and_has_no_file() -> None:
    readings = _host(RHEL)
    assert KNOB.native_files(_arguments(), readings, lab_topology()) == ()
    isolcpus = lab_results("cmdline")["cmdline/isolcpus"].setting
    steps = KNOB.steps_to_set(isolcpus.key, isolcpus.desired, readings, lab_topology())
    assert steps == (
        Run(("grubby", "--update-kernel=ALL", "--args=isolcpus=managed_irq,domain,1,3")),
    )


def test_rollback_restores_what_the_running_kernel_had() -> None:
    # The lab booted without these arguments: rollback removes them again.
    readings = _host(RHEL)
    for key, result in lab_results("cmdline").items():
        if result.setting.effect:
            continue
        assert result.actual is None
        name = key.removeprefix("cmdline/")
        assert KNOB.steps_to_set(key, result.actual, readings, lab_topology()) == (
            Run(("grubby", "--update-kernel=ALL", f"--remove-args={name}")),
        )
    # An argument the kernel had is put back as it was read.
    cmdline = "BOOT_IMAGE=/vmlinuz ro skew_tick=0 isolcpus=2-3 isolcpus=domain,1-3"
    booted = _host(RHEL, **{PROC_CMDLINE: (cmdline,)})
    for key, argument in (
        ("cmdline/skew_tick", "skew_tick=0"),
        ("cmdline/isolcpus", "isolcpus=domain,1-3"),
    ):
        setting = lab_results("cmdline")[key].setting
        actual = KNOB.observe(setting, booted, lab_topology()).actual
        assert actual == argument
        steps = KNOB.steps_to_set(key, actual, booted, lab_topology())
        assert steps == (Run(("grubby", "--update-kernel=ALL", f"--args={argument}")),)


def test_no_boot_loader_tool_changes_nothing_and_says_so() -> None:
    readings = load_readings("apply-vm-default")  # real: the Firecracker VM has neither
    assert KNOB.native_files(_arguments(), readings, lab_topology()) == ()
    for setting in _arguments():
        assert KNOB.steps_to_set(setting.key, setting.desired, readings, lab_topology()) == ()
    skew_tick = lab_results("cmdline")["cmdline/skew_tick"].setting
    assert KNOB.observe(skew_tick, readings, lab_topology()).reason == (
        "not on the running kernel's command line; neither update-grub nor grubby here to "
        "add it at boot"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cmdline/acpi_osi", 'acpi_osi="!Windows 2012"'),
        ("cmdline/acpi_osi", "acpi_osi=!Windows 2012"),  # what /proc/cmdline's quotes leave
        ("cmdline/memmap", "memmap=1G$4G"),
        ("cmdline/init", "init=`reboot`"),
        ("cmdline/root", "root=\\x"),
        ("cmdline/panic", "panic=1;reboot"),
        ("cmdline/panic", "panic=1\nreboot"),
    ],
)
def test_text_grub_or_grubby_could_misread_is_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, _host(RHEL), lab_topology())
    setting = Setting(key, "cmdline", value, "kernel.cmdline.0")
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([setting], _host(DEBIAN), lab_topology())


def test_keys_and_names_are_checked() -> None:
    readings = _host(RHEL)
    for key in ("cmdline/a b", "cmdline/", "cmdline/-x", "sysctl/kernel.panic"):
        with pytest.raises(UnsafeStepError):
            KNOB.steps_to_set(key, None, readings, lab_topology())
    with pytest.raises(UnsafeStepError):  # the value names another argument
        KNOB.steps_to_set("cmdline/skew_tick", "init=/bin/sh", readings, lab_topology())
