"""Clock health: ``verify.clock``. A trading host timestamps with the TSC and keeps its clock
on a reference through chrony (NTP) or ptp4l and phc2sys (PTP); each of these is a key:

- ``clock/clocksource``: the kernel's current clocksource is the declared one (``tsc``).
  Converging writes it to ``current_clocksource`` when the kernel offers it in
  ``available_clocksource``; the kernel forgets it at reboot, so the boot script writes it
  again. When the kernel does not offer it (it marked the TSC unstable), nothing can be
  written: verify says so, and the kernel log says why.
- ``clock/tsc_stable``: the CPU flags ``constant_tsc`` and ``nonstop_tsc`` (an invariant TSC:
  same rate at every frequency, running in deep C-states). Read, never set. A guest whose
  hypervisor hides the invariant TSC cannot have it: ``unsupported`` there, drift on metal.
- ``clock/chrony``, ``clock/ptp4l``: the daemon is synchronised and its current offset is
  within ``max_offset_us``. Offsets are measured, not set: ``actual`` carries the measured
  offset (``offset +0.012 us, synchronised``) and ``matches`` judges it against the limit.
- ``clock/phc2sys``: it runs (it has no management interface, so its offset is not read).

A daemon that does not run is ``unsupported`` unless ``verify.clock.require`` names it; then
it is ``missing``. quietcore never installs, starts or restarts time daemons: their keys have
no steps. Parsing and judging are pure; the fixed commands below do the reading.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NOT_MOUNTED, NodeCheck, Unchecked
from quietcore.profile.schema import ClockSection, Profile
from quietcore.readings import CommandResult, Readings, ReadSpec
from quietcore.steps import Step, Write, checked
from quietcore.topology import Topology

CLOCKSOURCES = "/sys/devices/system/clocksource/clocksource0"
CURRENT = f"{CLOCKSOURCES}/current_clocksource"
AVAILABLE = f"{CLOCKSOURCES}/available_clocksource"
CLOCKSOURCE_KEY = "clock/clocksource"
TSC_KEY = "clock/tsc_stable"
CHRONY_KEY = "clock/chrony"
PTP4L_KEY = "clock/ptp4l"
PHC2SYS_KEY = "clock/phc2sys"
FIELD = "verify.clock"
REQUIRE_FIELD = "verify.clock.require"
TSC_FLAGS = ("constant_tsc", "nonstop_tsc")
SYNCHRONISED, NOT_SYNCHRONISED, RUNNING = "synchronised", "not synchronised", "running"
NO_CLOCKSOURCE = "no clocksource in /sys/devices/system/clocksource (not a Linux kernel?)"
_CLOCKSOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# chronyc -n: no DNS lookups (a dead resolver would stall the bundle); -c: CSV. When chronyd
# does not run, chronyc answers "506 Cannot talk to daemon" at once (socket refused).
CHRONY_COMMAND = (
    "chrony-tracking",
    "if command -v chronyc >/dev/null 2>&1; then chronyc -n -c tracking;"
    " else echo 'chronyc: not installed'; exit 127; fi",
)
# Whether ptp4l and phc2sys run (by process name, from /proc: no procps needed), and ptp4l's
# state through its management socket (linuxptp's default, /var/run/ptp4l).
PTP_COMMAND = (
    "ptp-state",
    'for d in ptp4l phc2sys; do if grep -qsx "$d" /proc/[0-9]*/comm;'
    ' then echo "$d=running"; else echo "$d=stopped"; fi; done;'
    " if grep -qsx ptp4l /proc/[0-9]*/comm; then if command -v pmc >/dev/null 2>&1;"
    " then pmc -u -b 0 'GET TIME_STATUS_NP' 'GET PORT_DATA_SET';"
    " else echo 'pmc=not installed'; fi; fi; true",
)

# ``offset +0.012 us, synchronised``: what observe reports for chrony and ptp4l.
_OFFSET_ACTUAL = re.compile(
    rf"^offset ([+-][0-9]+\.[0-9]+) us, ({SYNCHRONISED}|{NOT_SYNCHRONISED})$"
)
_LIMIT_DESIRED = re.compile(rf"^\|offset\| <= ([0-9.e+-]+) us, {SYNCHRONISED}$")


# --- Daemon state (pure parsing) ----------------------------------------------------------------


@dataclass(frozen=True)
class DaemonState:
    """What one time daemon reports. ``offset_us`` is the measured offset of the clock it
    steers (``None``: unread); ``detail`` names its reference for the report; ``absent``
    says why it counts as not running (empty when it runs)."""

    synchronised: bool = False
    offset_us: float | None = None
    detail: str = ""
    absent: str = ""


# chronyc -c tracking's fields (chrony 4.x client.c, process_cmd_tracking), in order.
TRACKING_FIELDS = (
    "reference_id",
    "reference",
    "stratum",
    "ref_time",
    "system_time",  # seconds of correction still to apply; > 0: the clock is slow
    "last_offset",
    "rms_offset",
    "frequency",
    "residual_freq",
    "skew",
    "root_delay",
    "root_dispersion",
    "update_interval",
    "leap_status",
)


def parse_tracking(result: CommandResult | None) -> DaemonState:
    """``chronyc -n -c tracking`` as a state. The offset is ``System time``: how far the
    system clock is from chrony's estimate of true time right now (what chronyd is still
    slewing away). ``Last offset`` is only the estimate at the last update, and ``RMS offset``
    a long-term average, so neither says how wrong the clock is now."""
    if result is None:
        return DaemonState(absent="chronyd not read")
    if result.returncode == 127:
        return DaemonState(absent="chronyd not running (chronyc is not installed)")
    rows = [line.split(",") for line in result.lines if line.count(",") >= 13]
    if not result.ok or not rows:
        said = next((line.strip() for line in result.lines if line.strip()), "no answer")
        return DaemonState(absent=f"chronyd not running (chronyc: {said})")
    fields = dict(zip(TRACKING_FIELDS, rows[0], strict=False))
    leap = fields["leap_status"].strip()
    try:
        # chrony's value is the correction still to apply (> 0: the clock is slow); the
        # offset quietcore reports is the clock's lead over true time, as ptp4l's is.
        offset_us: float | None = 0.0 - float(fields["system_time"]) * 1e6
    except ValueError:
        offset_us = None
    reference = fields["reference"] or fields["reference_id"]
    detail = f"reference {reference}, stratum {fields['stratum']}, leap status {leap}"
    return DaemonState(leap != "Not synchronised", offset_us, detail)


@dataclass(frozen=True)
class PtpState:
    ptp4l: DaemonState
    phc2sys_running: bool


def pmc_responses(lines: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """pmc's answers: (management ID, its ``name value`` fields), in order. Each answer starts
    with ``<port identity> seq N RESPONSE MANAGEMENT <ID>`` and its fields are indented."""
    answers: list[tuple[str, dict[str, str]]] = []
    for line in lines:
        words = line.split()
        if "RESPONSE" in words and words[-2:-1] == ["MANAGEMENT"]:
            answers.append((words[-1], {}))
        elif answers and line[:1].isspace() and len(words) >= 2:
            answers[-1][1][words[0]] = " ".join(words[1:])
    return answers


def ptp4l_state(lines: Iterable[str]) -> DaemonState:
    """ptp4l's sync state from ``GET TIME_STATUS_NP`` and ``GET PORT_DATA_SET``: synchronised
    when it knows a grandmaster (``gmPresent``) and a port is locked to it (``SLAVE``;
    ``UNCALIBRATED`` is still converging). ``master_offset`` is in nanoseconds."""
    answers = pmc_responses(lines)
    status = next((fields for name, fields in answers if name == "TIME_STATUS_NP"), None)
    if status is None:
        return DaemonState(absent="ptp4l runs but did not answer pmc on /var/run/ptp4l")
    ports = [fields.get("portState", "?") for name, fields in answers if name == "PORT_DATA_SET"]
    gm_present = status.get("gmPresent") == "true"
    try:
        offset_us: float | None = int(status.get("master_offset", "")) / 1000
    except ValueError:
        offset_us = None
    grandmaster = status.get("gmIdentity", "?") if gm_present else "none"
    detail = f"grandmaster {grandmaster}, port state {' '.join(ports) or 'unknown'}"
    return DaemonState(gm_present and "SLAVE" in ports, offset_us, detail)


def parse_ptp(result: CommandResult | None) -> PtpState:
    lines = result.lines if result is not None else ()
    running = {line.partition("=")[0] for line in lines if line.endswith("=running")}
    if "ptp4l" not in running:
        ptp4l = DaemonState(absent="ptp4l not running")
    elif "pmc=not installed" in lines:
        ptp4l = DaemonState(absent="ptp4l runs, but pmc (linuxptp) is not installed to ask it")
    else:
        ptp4l = ptp4l_state(lines)
    return PtpState(ptp4l, "phc2sys" in running)


# --- Judging offsets (pure) ---------------------------------------------------------------------


def offset_desired(limit_us: float | None) -> str:
    return SYNCHRONISED if limit_us is None else f"|offset| <= {limit_us:g} us, {SYNCHRONISED}"


def offset_actual(state: DaemonState) -> str | None:
    if state.offset_us is None:
        return None
    word = SYNCHRONISED if state.synchronised else NOT_SYNCHRONISED
    return f"offset {state.offset_us:+.3f} us, {word}"


def offset_within(desired: str, actual: str) -> bool:
    """Whether a daemon's observed ``actual`` meets ``desired`` (see ``offset_desired``)."""
    seen = _OFFSET_ACTUAL.fullmatch(actual)
    if seen is None or seen.group(2) != SYNCHRONISED:
        return False
    limit = _LIMIT_DESIRED.fullmatch(desired)
    return limit is None or abs(float(seen.group(1))) <= float(limit.group(1))


# --- The family ---------------------------------------------------------------------------------


def _daemon_setting(
    ctx: ResolveContext, clock: ClockSection, key: str, daemon: str, desired: str
) -> Setting:
    # A required daemon's setting comes from ``require``: observe reads that from the field.
    if daemon in clock.require:
        field = REQUIRE_FIELD
    elif clock.max_offset_us is not None and desired != RUNNING:
        field = f"{FIELD}.max_offset_us"
    else:
        field = FIELD
    # An effect: a daemon's state and offset are measured, never set, so snapshot and rollback
    # leave them alone (an offset restored "exactly" would fail every rollback).
    return ctx.setting(ClockKnob.name, key, desired, field, effect=True)


def _absent(setting: Setting, daemon: str, why: str) -> Observation:
    if setting.field == REQUIRE_FIELD:
        return Observation(None, "missing", f"{why}, and {REQUIRE_FIELD} lists {daemon}")
    return Observation(None, "unsupported", why)


def _daemon_observation(setting: Setting, daemon: str, state: DaemonState) -> Observation:
    if state.absent:
        return _absent(setting, daemon, state.absent)
    actual = offset_actual(state)
    if actual is None:
        return Observation(None, "drift", f"{daemon} reported no offset ({state.detail})")
    return Observation(actual, reason=state.detail)


def _clocksource(setting: Setting, readings: Readings) -> Observation:
    current = readings.first_line(CURRENT)
    if current is None:
        return Observation(None, "unsupported", NO_CLOCKSOURCE)
    available = (readings.first_line(AVAILABLE) or "").split()
    if current == setting.desired or setting.desired in available:
        return Observation(current, reason=f"available: {' '.join(available)}")
    return Observation(
        current,
        "drift",
        f"the kernel does not offer {setting.desired} (available: {' '.join(available)}): it "
        "marked it unstable; the kernel log says why (`dmesg | grep -i clocksource`), and in a "
        "VM `tsc=reliable` on the kernel command line makes it trust the TSC",
    )


def _tsc(topology: Topology) -> Observation:
    present = [flag for flag in TSC_FLAGS if flag in topology.flags]
    actual = " ".join(present) or "none"
    lacking = " ".join(flag for flag in TSC_FLAGS if flag not in topology.flags)
    if not lacking:
        return Observation(actual)
    if "tsc" not in topology.flags:
        return Observation(None, "unsupported", "the CPU has no TSC (not x86)")
    if topology.hypervisor is not None:
        return Observation(
            actual,
            "unsupported",
            f"the {topology.hypervisor} hypervisor does not pass an invariant TSC to this "
            f"guest (no {lacking}); it is a host setting (KVM: `-cpu host,+invtsc`)",
        )
    return Observation(
        actual,
        "drift",
        f"the CPU lacks {lacking}: its TSC changes rate with frequency or stops in deep "
        "C-states, so the kernel cannot trust it as a clock",
    )


class ClockKnob(KnobFamily):
    name = "clock"
    boot_script = True  # the clocksource write
    unchecked_on_node = (
        "time daemons are read through their command sockets (chronyc, pmc); " + NOT_MOUNTED
    )

    def reads(self, profile: Profile) -> ReadSpec:
        if profile.verify.clock is None:
            return ReadSpec()
        return ReadSpec(files=(CURRENT, AVAILABLE), commands=(CHRONY_COMMAND, PTP_COMMAND))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        clock = ctx.profile.verify.clock
        if clock is None:
            return []
        settings = []
        if clock.clocksource is not None:
            field = f"{FIELD}.clocksource"
            settings.append(ctx.setting(self.name, CLOCKSOURCE_KEY, clock.clocksource, field))
            # An effect: it proves the TSC the clocksource uses keeps time; nothing sets it.
            flags = " ".join(TSC_FLAGS)
            settings.append(ctx.setting(self.name, TSC_KEY, flags, field, effect=True))
        limited = offset_desired(clock.max_offset_us)
        settings += [
            _daemon_setting(ctx, clock, CHRONY_KEY, "chrony", limited),
            _daemon_setting(ctx, clock, PTP4L_KEY, "ptp4l", limited),
            _daemon_setting(ctx, clock, PHC2SYS_KEY, "phc2sys", RUNNING),
        ]
        return settings

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == CLOCKSOURCE_KEY:
            return _clocksource(setting, readings)
        if setting.key == TSC_KEY:
            return _tsc(topology)
        if setting.key == CHRONY_KEY:
            return _daemon_observation(
                setting, "chrony", parse_tracking(readings.command(CHRONY_COMMAND[0]))
            )
        ptp = parse_ptp(readings.command(PTP_COMMAND[0]))
        if setting.key == PTP4L_KEY:
            return _daemon_observation(setting, "ptp4l", ptp.ptp4l)
        if not ptp.phc2sys_running:
            return _absent(setting, "phc2sys", "phc2sys not running")
        return Observation(
            RUNNING, reason="phc2sys has no management interface: its offset is not read"
        )

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key in (CHRONY_KEY, PTP4L_KEY):
            return offset_within(setting.desired, actual)
        return setting.desired == actual

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key != CLOCKSOURCE_KEY:
            return ()  # measured, not set: quietcore never starts or steers time daemons
        if value is None:
            return ()
        name = checked(value, _CLOCKSOURCE_NAME, key)
        available = readings.first_line(AVAILABLE)
        # The kernel takes any name and silently keeps its clocksource when the name is not
        # available: writing it would change nothing, so there is nothing to do.
        if available is not None and name not in available.split():
            return ()
        return (Write(CURRENT, name),)

    def node_check(self, setting: Setting) -> NodeCheck | Unchecked:
        if setting.key == CLOCKSOURCE_KEY:
            return NodeCheck(setting.key, CURRENT, "exact", setting.desired, "unsupported")
        if setting.key == TSC_KEY:
            return Unchecked(setting.key, "CPU flags are judged from the topology over SSH")
        return Unchecked(setting.key, self.unchecked_on_node)
