"""The CPUs systemd runs itself and every service on: ``containers.systemd.cpu_affinity``.

Keys: ``systemd/CPUAffinity``, the configured value, and ``systemd/pid1_cpus_allowed``, its
effect: ``Cpus_allowed_list`` of PID 1, which systemd sets at boot (reboot required).

The configuration is read as systemd-system.conf(5) defines it: the main file
(``/etc/systemd/system.conf``, or the first of ``/run``, ``/usr/local/lib``, ``/usr/lib``),
then the ``system.conf.d/*.conf`` drop-ins of all four directories sorted by file name (a name
in ``/etc`` hides the same name in ``/run``, which hides ``/usr/local/lib`` and ``/usr/lib``).
``CPUAffinity=`` lists CPUs or ranges separated by spaces or commas; assignments *merge*, and
an empty assignment resets what came before. Not set at all means every CPU.

Converging: ``/etc/systemd/system.conf.d/90-quietcore.conf`` resets ``CPUAffinity`` and sets
it (a plain assignment would merge with earlier ones). systemd applies it to itself and its
services at the next boot; nothing changes at runtime.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NOT_MOUNTED
from quietcore.profile.cpuset import CpuSet, CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import ManagedFile, UnsafeStepError
from quietcore.topology import Topology

FIELD = "containers.systemd.cpu_affinity"
CONFIG_KEY = "systemd/CPUAffinity"
EFFECT_KEY = "systemd/pid1_cpus_allowed"
# Highest precedence first, as systemd-system.conf(5) orders them.
CONFIG_DIRS = ("/etc/systemd", "/run/systemd", "/usr/local/lib/systemd", "/usr/lib/systemd")
MAIN_FILES = tuple(f"{directory}/system.conf" for directory in CONFIG_DIRS)
DROP_IN_GLOBS = tuple(f"{directory}/system.conf.d/*.conf" for directory in CONFIG_DIRS)
PID1_STATUS = "/proc/1/status"
PID1_COMM = "/proc/1/comm"
DROP_IN = "/etc/systemd/system.conf.d/90-quietcore.conf"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def configuration_files(readings: Readings) -> list[tuple[str, tuple[str, ...]]]:
    """(path, lines) of the files systemd reads, in the order it applies them."""
    mains = [(path, lines) for path in MAIN_FILES if (lines := readings.lines(path)) is not None]
    files = mains[:1]  # the first main file found is the only one read
    drop_ins: dict[str, tuple[str, tuple[str, ...]]] = {}
    for pattern in reversed(DROP_IN_GLOBS):  # lowest precedence first: later ones replace
        for path, lines in readings.glob(pattern).items():
            drop_ins[PurePosixPath(path).name] = (path, lines)
    return files + [drop_ins[name] for name in sorted(drop_ins)]


def manager_assignments(lines: Iterable[str], name: str) -> list[str]:
    """Every value assigned to ``name`` in the ``[Manager]`` section, in order."""
    values: list[str] = []
    section = ""
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Manager" and line.partition("=")[0].strip() == name:
            values.append(line.partition("=")[2].strip())
    return values


def configured_affinity(files: list[tuple[str, tuple[str, ...]]]) -> tuple[CpuSet | None, str]:
    """The merged ``CPUAffinity`` (``None`` when never assigned) and the last file setting it."""
    cpus: CpuSet | None = None
    source = ""
    for path, lines in files:
        for value in manager_assignments(lines, "CPUAffinity"):
            source = path
            if not value:
                cpus = None
                continue
            # A CpuSetError names the bad item; the caller reports it.
            cpus = (cpus or frozenset()) | parse_cpulist(",".join(value.replace(",", " ").split()))
    return cpus, source


def render_drop_in(setting: Setting) -> str:
    try:
        cpus = parse_cpulist(setting.desired)
    except CpuSetError as error:
        raise UnsafeStepError(f"refusing CPUAffinity {setting.desired!r}: {error}") from None
    if not cpus:  # an empty assignment would mean every CPU, not none
        raise UnsafeStepError("refusing an empty CPUAffinity")
    where = _UNPRINTABLE.sub("?", f"{setting.field} ({setting.source or 'source unknown'})")
    lines = [
        "# Owned by quietcore: rendered in full at every apply, edits here are overwritten;",
        "# `quietcore rollback` removes this file. systemd applies it at the next boot.",
        f"# CPUAffinity comes from {where}; the empty assignment first resets",
        "# what earlier files set, since CPUAffinity assignments merge.",
        "[Manager]",
        "CPUAffinity=",
        f"CPUAffinity={format_cpulist(cpus)}",
    ]
    return "\n".join(lines) + "\n"


class SystemdKnob(KnobFamily):
    name = "systemd"
    unchecked_on_node = f"systemd's configuration in /etc: {NOT_MOUNTED}"
    managed_paths = (DROP_IN,)

    def reads(self, profile: Profile) -> ReadSpec:
        section = profile.containers.systemd
        if section is None or section.cpu_affinity is None:
            return ReadSpec()
        return ReadSpec(files=(*MAIN_FILES, *DROP_IN_GLOBS, PID1_STATUS, PID1_COMM))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        section = ctx.profile.containers.systemd
        if section is None or section.cpu_affinity is None:
            return
        cpus = format_cpulist(ctx.cpuset(section.cpu_affinity))
        # Set by the drop-in, which systemd applies only at boot.
        yield ctx.setting(self.name, CONFIG_KEY, cpus, FIELD, reboot=True)
        yield ctx.setting(self.name, EFFECT_KEY, cpus, FIELD, reboot=True, effect=True)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == EFFECT_KEY:
            return self._pid1(readings)
        files = configuration_files(readings)
        if not files:
            return Observation(
                None, "missing", f"no systemd manager configuration ({MAIN_FILES[0]})"
            )
        try:
            cpus, source = configured_affinity(files)
        except CpuSetError as error:
            return Observation(None, reason=f"CPUAffinity: {error}")
        if cpus is None:
            return Observation(
                format_cpulist(topology.online),
                reason="CPUAffinity is not set: systemd and its services may use every CPU",
            )
        return Observation(format_cpulist(cpus), reason=f"last set in {source}")

    @staticmethod
    def _pid1(readings: Readings) -> Observation:
        init = readings.first_line(PID1_COMM)
        if init is not None and init != "systemd":
            return Observation(
                None, "unsupported", f"PID 1 is {init}, not systemd: nothing applies CPUAffinity"
            )
        for line in readings.lines(PID1_STATUS) or ():
            label, _, value = line.partition(":")
            if label == "Cpus_allowed_list":
                return Observation(format_cpulist(parse_cpulist(value)))
        return Observation(None, "unsupported", "PID 1's allowed CPUs cannot be read here")

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        configured = [setting for setting in settings if setting.key == CONFIG_KEY]
        if not configured:
            return ()
        content = render_drop_in(configured[0])
        # No activation: PID 1 reads it at boot (daemon-reexec would too, but re-executing
        # PID 1 on a production host is not something to do behind the operator's back).
        return (ManagedFile(DROP_IN, content, self.name, reboot=True),)
