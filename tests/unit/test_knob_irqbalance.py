"""The irqbalance family on real captures of the Firecracker VM (see platform_knob_hosts):
without irqbalance, with Debian's irqbalance 1.9.2 banning CPU 1 by list while the daemon
runs, and with both the legacy mask and the list set. PID 1 there is not systemd, so systemd's
answers are built explicitly from what ``systemctl is-active/is-enabled`` print."""

from __future__ import annotations

import dataclasses

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, synthetic_host, verdicts
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.irqbalance import (
    NOT_INSTALLED,
    STATE_COMMAND,
    IrqbalanceKnob,
    environment_file,
)
from quietcore.profile.cpuplan import CpuPlan
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile
from quietcore.readings import CommandResult, Readings

KNOB = IrqbalanceKnob()
VM = capture_topology("platform-vm-default")
DISABLED = profile(cpu={"reserved": "0", "isolated": "1"}, irq={"irqbalance": "disabled"})


def _settings(declared: Profile = CAPTURE_PROFILE) -> list[Setting]:
    return list(KNOB.desired(context(declared, VM)))


def test_without_irqbalance_banning_is_unsupported_and_disabled_is_ok() -> None:
    readings = load_readings("platform-vm-default")
    assert verdicts(_settings(), readings, VM) == {
        "irqbalance/banned_cpulist": ("unsupported", None)
    }
    assert verdicts(_settings(DISABLED), readings, VM) == {"irqbalance/service": ("ok", "inactive")}
    [banned] = _settings()
    assert KNOB.observe(banned, readings, VM).reason == NOT_INSTALLED


def test_banned_cpulist_of_the_running_daemon() -> None:
    readings = load_readings("platform-vm-irqbalance-list")
    assert verdicts(_settings(), readings, VM) == {"irqbalance/banned_cpulist": ("ok", "1")}
    assert verdicts(_settings(DISABLED), readings, VM) == {
        "irqbalance/service": ("drift", "active")
    }
    [banned] = _settings()
    assert "IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance" in (
        KNOB.observe(banned, readings, VM).reason
    )


def test_legacy_mask_wins_over_the_list() -> None:
    # IRQBALANCE_BANNED_CPUS=2 (CPU 1) and IRQBALANCE_BANNED_CPULIST=0: irqbalance 1.9 bans CPU 1.
    readings = load_readings("platform-vm-irqbalance-legacy")
    assert verdicts(_settings(), readings, VM) == {"irqbalance/banned_cpulist": ("ok", "1")}
    [banned] = _settings()
    reason = KNOB.observe(banned, readings, VM).reason
    assert "legacy IRQBALANCE_BANNED_CPUS" in reason
    assert "IRQBALANCE_BANNED_CPULIST=0 is ignored" in reason
    assert verdicts(_settings(DISABLED), readings, VM) == {"irqbalance/service": ("ok", "inactive")}


def _state(*lines: str) -> dict[str, CommandResult]:
    return {STATE_COMMAND: CommandResult(lines, 0)}


def test_systemd_service_enabled_at_boot_is_drift_even_when_stopped() -> None:
    # Built explicitly: a systemd host where irqbalance is stopped but enabled, and one where
    # it is disabled and failed (not running either way).
    installed = "installed=/usr/sbin/irqbalance"
    stopped = Readings(
        commands=_state(installed, "init=systemd", "active=inactive", "enabled=enabled")
    )
    failed = Readings(
        commands=_state(installed, "init=systemd", "active=failed", "enabled=disabled")
    )
    assert verdicts(_settings(DISABLED), stopped, VM) == {
        "irqbalance/service": ("drift", "inactive, enabled at boot")
    }
    assert verdicts(_settings(DISABLED), failed, VM) == {"irqbalance/service": ("ok", "inactive")}


def test_config_file_absent_or_garbage() -> None:
    # Built explicitly: installed without an environment file (a source build), and a list
    # that is not a CPU list.
    commands = _state("installed=/usr/local/sbin/x", "init=other", "active=inactive")
    no_file = Readings(commands=commands)
    garbage = Readings(
        {"/etc/sysconfig/irqbalance": ('IRQBALANCE_BANNED_CPULIST="2-x"',)}, commands
    )
    assert verdicts(_settings(), no_file, VM) == {"irqbalance/banned_cpulist": ("missing", None)}
    assert verdicts(_settings(), garbage, VM) == {"irqbalance/banned_cpulist": ("drift", "2-x")}


def test_environment_file_reads_like_a_shell() -> None:
    lines = (
        "# IRQBALANCE_BANNED_CPULIST=9",
        "export IRQBALANCE_BANNED_CPULIST='2-3'",
        'IRQBALANCE_ARGS="--policyscript=/x.sh"',
        "IRQBALANCE_BANNED_CPULIST=4-7",
        "",
    )
    assert environment_file(lines) == {
        "IRQBALANCE_BANNED_CPULIST": "4-7",
        "IRQBALANCE_ARGS": "--policyscript=/x.sh",
    }


def test_desired_bans_the_isolated_cpus() -> None:
    host = synthetic_host()
    declared = profile(
        cpu={"reserved": "0,4", "isolated": "rest"}, irq={"irqbalance": "ban-isolated"}
    )
    [banned] = KNOB.desired(context(declared, host, reserved=frozenset({0, 4})))
    assert (banned.key, banned.desired, banned.field) == (
        "irqbalance/banned_cpulist",
        "1-3,5-7",
        "irq.irqbalance",
    )
    assert KNOB.reads(declared).files == ("/etc/default/irqbalance", "/etc/sysconfig/irqbalance")
    assert KNOB.reads(DISABLED).files == ()
    assert [name for name, _ in KNOB.reads(DISABLED).commands] == [STATE_COMMAND]


def test_ban_isolated_without_isolated_cpus_is_refused() -> None:
    declared = profile(cpu={"reserved": "0"}, irq={"irqbalance": "ban-isolated"})
    ctx = context(declared, synthetic_host(), reserved=frozenset({0}))
    ctx = dataclasses.replace(ctx, cpus=CpuPlan(ctx.cpus.online, ctx.cpus.reserved, frozenset()))
    with pytest.raises(ResolveError) as refused:
        list(KNOB.desired(ctx))
    assert refused.value.field == "irq.irqbalance"
