"""The irqbalance daemon, which moves IRQs between CPUs every 10 s: ``irq.irqbalance``.

``ban-isolated`` -> ``irqbalance/banned_cpulist``: the CPUs irqbalance must never send IRQs to
equal the isolated CPUs. Read from the daemon's environment file, ``/etc/default/irqbalance``
(Debian) or ``/etc/sysconfig/irqbalance`` (RHEL): ``IRQBALANCE_BANNED_CPULIST=`` (a CPU list,
irqbalance >= 1.8) or the legacy ``IRQBALANCE_BANNED_CPUS=`` hex mask (TuneD issue #656).
irqbalance 1.9 still honours a non-empty legacy mask *before* the list, so that is what counts.

``disabled`` -> ``irqbalance/service`` = ``inactive``: not running, and (under systemd) not
enabled to start at the next boot either.

Converging: the banned list is written into the environment file the host has (irqbalance's
package ships it; Debian's path when neither exists), every existing banned-CPU assignment
removed so that no legacy mask overrides the list, and irqbalance restarted if it runs. The
service is stopped/started and disabled/enabled with systemctl, which persists it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NOT_MOUNTED
from quietcore.profile.cpuset import CpuSetError, format_cpulist, parse_cpulist, parse_cpumask
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import ManagedFile, Run, Step, UnsafeStepError
from quietcore.topology import Topology

FIELD = "irq.irqbalance"
BANNED_KEY = "irqbalance/banned_cpulist"
SERVICE_KEY = "irqbalance/service"
CONFIG_FILES = ("/etc/default/irqbalance", "/etc/sysconfig/irqbalance")
CPULIST_VAR = "IRQBALANCE_BANNED_CPULIST"
MASK_VAR = "IRQBALANCE_BANNED_CPUS"
NOT_INSTALLED = "irqbalance is not installed (nothing rebalances IRQs)"
UNIT = "irqbalance.service"
# Any assignment of a banned-CPU variable, live or exported (commented lines are not).
_BANNED_ASSIGNMENT = re.compile(rf"^\s*(?:export\s+)?(?:{CPULIST_VAR}|{MASK_VAR})\s*=")
# quietcore's comment lines in the file; dropped and written again at every render.
MARK = "# quietcore:"
_CPULIST = re.compile(r"^[0-9,-]+$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
# Service value (as ``observe`` reports it) -> the systemctl runs that give it.
SERVICE_STEPS = {
    "inactive": (("disable", "--now", UNIT),),
    "inactive, enabled at boot": (("stop", UNIT), ("enable", UNIT)),
    "active": (("disable", UNIT), ("start", UNIT)),
    "active, enabled at boot": (("enable", "--now", UNIT),),
}

STATE_COMMAND = "irqbalance-state"
# Prints key=value lines: where the binary is (if anywhere), the init system, and whether the
# daemon runs (systemd's words, or a scan of process names when systemd is not PID 1).
STATE_SHELL = (
    "for p in /usr/sbin/irqbalance /usr/bin/irqbalance /sbin/irqbalance; do"
    ' [ -x "$p" ] && echo "installed=$p" && break; done;'
    " if [ -d /run/systemd/system ]; then echo init=systemd;"
    ' echo "active=$(systemctl is-active irqbalance.service 2>/dev/null)";'
    ' echo "enabled=$(systemctl is-enabled irqbalance.service 2>/dev/null)";'
    " else echo init=other;"
    " if grep -qsx irqbalance /proc/[0-9]*/comm; then echo active=active;"
    " else echo active=inactive; fi; fi"
)
RUNNING = frozenset({"active", "activating", "reloading", "deactivating", "refreshing"})
# ``systemctl is-enabled`` answers that do not start the unit at boot.
NOT_AT_BOOT = frozenset({"", "disabled", "masked", "masked-runtime", "static", "not-found"})


@dataclass(frozen=True)
class DaemonState:
    installed: bool
    systemd: bool
    active: str  # systemd's is-active word, or active/inactive from the process list
    enabled: str  # systemd's is-enabled word; "" without systemd

    @property
    def running(self) -> bool:
        return self.active in RUNNING

    @property
    def starts_at_boot(self) -> bool:
        return self.systemd and self.enabled not in NOT_AT_BOOT


def daemon_state(readings: Readings) -> DaemonState | None:
    result = readings.command(STATE_COMMAND)
    if result is None:
        return None
    values = dict(line.partition("=")[::2] for line in result.lines if "=" in line)
    return DaemonState(
        installed="installed" in values,
        systemd=values.get("init") == "systemd",
        active=values.get("active", ""),
        enabled=values.get("enabled", ""),
    )


def environment_file(lines: Iterable[str]) -> dict[str, str]:
    """Variables of a shell-style environment file (``export`` allowed, quotes removed);
    the last assignment of a name wins, as when the shell or systemd reads it."""
    variables: dict[str, str] = {}
    for raw in lines:
        line = raw.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name.strip()] = value.strip()
    return variables


def banned_observation(path: str, variables: dict[str, str]) -> Observation:
    """The CPUs irqbalance bans according to one environment file, and from which variable."""
    mask, cpulist = variables.get(MASK_VAR, ""), variables.get(CPULIST_VAR, "")
    try:
        if mask:
            ignored = f"; its {CPULIST_VAR}={cpulist} is ignored" if cpulist else ""
            return Observation(
                format_cpulist(parse_cpumask(mask)),
                reason=f"from the legacy {MASK_VAR} mask in {path}, which irqbalance reads "
                f"before {CPULIST_VAR}{ignored}",
            )
        if cpulist:
            return Observation(
                format_cpulist(parse_cpulist(cpulist)), reason=f"from {CPULIST_VAR} in {path}"
            )
    except CpuSetError as error:
        return Observation(mask or cpulist, "drift", f"{path}: {error}")
    return Observation(
        "",
        reason=f"{path} bans no CPU: irqbalance falls back to the isolcpus/nohz_full CPUs",
    )


def environment_path(readings: Readings) -> str | None:
    """The environment file to write: the one the host has (the one ``observe`` reads), or
    Debian's where irqbalance is installed without one; ``None`` without irqbalance."""
    for path in CONFIG_FILES:
        if readings.lines(path) is not None:
            return path
    state = daemon_state(readings)
    return CONFIG_FILES[0] if state is not None and state.installed else None


def render_environment(lines: Iterable[str], cpulist: str, setting: Setting) -> str:
    """``lines`` without any banned-CPU assignment nor an earlier quietcore block, then the
    block: rendering the result again gives the same text."""
    if not _CPULIST.fullmatch(cpulist):
        raise UnsafeStepError(f"refusing banned CPU list {cpulist!r}")
    kept = [
        line for line in lines if not _BANNED_ASSIGNMENT.match(line) and not line.startswith(MARK)
    ]
    while kept and not kept[-1].strip():
        kept.pop()
    where = _UNPRINTABLE.sub("?", f"{setting.field} ({setting.source or 'source unknown'})")
    block = [
        f"{MARK} {CPULIST_VAR} below is owned by quietcore, from {where};",
        f"{MARK} other banned-CPU lines were removed. `quietcore rollback` restores this file.",
        f"{CPULIST_VAR}={cpulist}",
    ]
    return "\n".join([*kept, "", *block] if kept else block) + "\n"


class IrqbalanceKnob(KnobFamily):
    name = "irqbalance"
    unchecked_on_node = f"irqbalance's environment file and service state: {NOT_MOUNTED}"
    managed_paths = CONFIG_FILES

    def reads(self, profile: Profile) -> ReadSpec:
        if profile.irq.irqbalance is None:
            return ReadSpec()
        files = CONFIG_FILES if profile.irq.irqbalance == "ban-isolated" else ()
        return ReadSpec(files=files, commands=((STATE_COMMAND, STATE_SHELL),))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        mode = ctx.profile.irq.irqbalance
        if mode == "disabled":
            yield ctx.setting(self.name, SERVICE_KEY, "inactive", FIELD)
        elif mode == "ban-isolated":
            if not ctx.cpus.isolated:
                raise ResolveError(FIELD, "ban-isolated needs cpu.isolated: no CPU is isolated")
            yield ctx.setting(self.name, BANNED_KEY, format_cpulist(ctx.cpus.isolated), FIELD)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        state = daemon_state(readings)
        if state is None:
            return Observation(None, "unsupported", "the irqbalance state was not read")
        if setting.key == SERVICE_KEY:
            return self._service(state)
        if not state.installed:
            return Observation(None, "unsupported", NOT_INSTALLED)
        for path in CONFIG_FILES:
            lines = readings.lines(path)
            if lines is not None:
                return banned_observation(path, environment_file(lines))
        return Observation(
            None, "missing", f"no irqbalance configuration: neither {' nor '.join(CONFIG_FILES)}"
        )

    @staticmethod
    def _service(state: DaemonState) -> Observation:
        actual = "active" if state.running else "inactive"
        if state.starts_at_boot:
            actual += ", enabled at boot"
        if state.systemd:
            reason = f"systemd: is-active {state.active}, is-enabled {state.enabled or '-'}"
        else:
            reason = "systemd is not PID 1: from the process list; start at boot not known"
        if not state.installed and not state.running:
            reason = "irqbalance is not installed"
        return Observation(actual, reason=reason)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key == BANNED_KEY:  # the environment file carries the list
            return ()
        if key != SERVICE_KEY:
            raise UnsafeStepError(f"refusing key {key!r}: not one quietcore knows")
        if value is None:
            return ()
        if value not in SERVICE_STEPS:
            raise UnsafeStepError(f"refusing {key} = {value!r}: not a state quietcore sets")
        return tuple(Run(("systemctl", *argv), systemd_only=True) for argv in SERVICE_STEPS[value])

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        banned = [setting for setting in settings if setting.key == BANNED_KEY]
        path = environment_path(readings)
        if not banned or path is None:
            return ()
        content = render_environment(readings.lines(path) or (), banned[0].desired, banned[0])
        # irqbalance reads its environment only at start; try-restart leaves a stopped one be.
        restart = Run(("systemctl", "try-restart", UNIT), systemd_only=True)
        return (ManagedFile(path, content, self.name, activate=(restart,)),)
