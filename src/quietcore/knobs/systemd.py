"""systemd's own manager settings: ``containers.systemd``.

- ``cpu_affinity``: the CPUs systemd runs itself and every service on. Keys
  ``systemd/CPUAffinity``, the configured value, and ``systemd/pid1_cpus_allowed``, its effect:
  ``Cpus_allowed_list`` of PID 1, which systemd sets at boot (reboot required).
- ``default_limit_nofile``: the open-file limit every service starts with. Keys
  ``systemd/DefaultLimitNOFILE``, the configured value, and ``systemd/manager_limit_nofile``, its
  effect: what the running manager reports (``systemctl show -p DefaultLimitNOFILE -p
  DefaultLimitNOFILESoft``). systemd re-reads system.conf at ``daemon-reload`` (checked on
  Debian 12's systemd 252: the manager's default changes at once and goes back when the drop-in
  is removed and systemd reloads again), so no reboot; a service gets the new limit when it
  next starts. Values are canonical as ``N`` when soft and hard are equal, else ``soft:hard``.

The configuration is read as systemd-system.conf(5) defines it: the main file
(``/etc/systemd/system.conf``, or the first of ``/run``, ``/usr/local/lib``, ``/usr/lib``),
then the ``system.conf.d/*.conf`` drop-ins of all four directories sorted by file name (a name
in ``/etc`` hides the same name in ``/run``, which hides ``/usr/local/lib`` and ``/usr/lib``).
``CPUAffinity=`` lists CPUs or ranges separated by spaces or commas; assignments *merge*, and
an empty assignment resets what came before. Not set at all means every CPU.
``DefaultLimitNOFILE=`` is ``N``, ``soft:hard`` or ``infinity``; the last assignment wins.

Converging: ``/etc/systemd/system.conf.d/90-quietcore.conf`` resets ``CPUAffinity`` and sets
it (a plain assignment would merge with earlier ones), and sets ``DefaultLimitNOFILE``. systemd
applies CPUAffinity to itself and its services at the next boot. When the file holds
``DefaultLimitNOFILE``, ``systemctl daemon-reload`` activates it (that reload also applies a
CPUAffinity in the same file to PID 1 at once, which is the desired value anyway; removing
the file does not give PID 1 its CPUs back before the reboot the CPUAffinity key asks for).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NOT_MOUNTED
from quietcore.knobs.units import DAEMON_RELOAD
from quietcore.profile.cpuset import CpuSet, CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.schema import INFINITY, Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import ManagedFile, UnsafeStepError
from quietcore.topology import Topology

FIELD = "containers.systemd.cpu_affinity"
CONFIG_KEY = "systemd/CPUAffinity"
EFFECT_KEY = "systemd/pid1_cpus_allowed"
NOFILE_FIELD = "containers.systemd.default_limit_nofile"
NOFILE_KEY = "systemd/DefaultLimitNOFILE"
NOFILE_EFFECT_KEY = "systemd/manager_limit_nofile"
# The running manager's default limit; nothing where PID 1 is not systemd (it prints why).
MANAGER_COMMAND = "systemd-manager"
MANAGER_SHELL = "systemctl show -p DefaultLimitNOFILE -p DefaultLimitNOFILESoft 2>&1"
# Highest precedence first, as systemd-system.conf(5) orders them.
CONFIG_DIRS = ("/etc/systemd", "/run/systemd", "/usr/local/lib/systemd", "/usr/lib/systemd")
MAIN_FILES = tuple(f"{directory}/system.conf" for directory in CONFIG_DIRS)
DROP_IN_GLOBS = tuple(f"{directory}/system.conf.d/*.conf" for directory in CONFIG_DIRS)
PID1_STATUS = "/proc/1/status"
PID1_COMM = "/proc/1/comm"
DROP_IN = "/etc/systemd/system.conf.d/90-quietcore.conf"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
# A DefaultLimitNOFILE value quietcore writes: a number or infinity, nothing else.
_LIMIT = re.compile(rf"^(?:[0-9]{{1,19}}|{INFINITY})$")


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


def canonical_limit(text: str) -> str:
    """``1024:524288`` stays, ``65536:65536`` -> ``65536``, ``infinity`` stays: soft and hard
    written once when they are equal, as ``desired`` writes a single number."""
    soft, sep, hard = (part.strip() for part in text.strip().partition(":"))
    return soft if not sep or soft == hard else f"{soft}:{hard}"


def configured_limit(files: list[tuple[str, tuple[str, ...]]]) -> tuple[str | None, str]:
    """The last ``DefaultLimitNOFILE`` assigned (``None`` when never) and the file setting it.
    An empty assignment is not a value (systemd rejects it and keeps the earlier one)."""
    value: str | None = None
    source = ""
    for path, lines in files:
        for assigned in manager_assignments(lines, "DefaultLimitNOFILE"):
            if assigned:
                value, source = canonical_limit(assigned), path
    return value, source


def manager_limit(lines: Iterable[str]) -> str | None:
    """``systemctl show``'s DefaultLimitNOFILE (hard) and DefaultLimitNOFILESoft, canonical."""
    shown = dict(line.strip().partition("=")[::2] for line in lines if "=" in line)
    hard, soft = shown.get("DefaultLimitNOFILE"), shown.get("DefaultLimitNOFILESoft")
    if not hard or not soft:
        return None
    return canonical_limit(f"{soft}:{hard}")


def _where(setting: Setting) -> str:
    return _UNPRINTABLE.sub("?", f"{setting.field} ({setting.source or 'source unknown'})")


def _affinity_lines(setting: Setting) -> tuple[list[str], list[str]]:
    """(comment, assignments) for CPUAffinity."""
    try:
        cpus = parse_cpulist(setting.desired)
    except CpuSetError as error:
        raise UnsafeStepError(f"refusing CPUAffinity {setting.desired!r}: {error}") from None
    if not cpus:  # an empty assignment would mean every CPU, not none
        raise UnsafeStepError("refusing an empty CPUAffinity")
    comment = [
        f"# CPUAffinity comes from {_where(setting)}; systemd applies it",
        "# at the next boot. The empty assignment first resets what earlier files set, since",
        "# CPUAffinity assignments merge.",
    ]
    return comment, ["CPUAffinity=", f"CPUAffinity={format_cpulist(cpus)}"]


def _limit_lines(setting: Setting) -> tuple[list[str], list[str]]:
    """(comment, assignment) for DefaultLimitNOFILE."""
    if not _LIMIT.fullmatch(setting.desired):
        raise UnsafeStepError(f"refusing DefaultLimitNOFILE {setting.desired!r}")
    comment = [
        f"# DefaultLimitNOFILE comes from {_where(setting)}; systemd reads",
        "# it at daemon-reload, and services get it when they next start.",
    ]
    return comment, [f"DefaultLimitNOFILE={setting.desired}"]


def render_drop_in(settings: Sequence[Setting]) -> str:
    """The drop-in for the configuration keys among ``settings`` (CPUAffinity, then the limit)."""
    by_key = {setting.key: setting for setting in settings}
    comments = [
        "# Owned by quietcore: rendered in full at every apply, edits here are overwritten;",
        "# `quietcore rollback` removes this file.",
    ]
    assignments = ["[Manager]"]
    for key, lines in ((CONFIG_KEY, _affinity_lines), (NOFILE_KEY, _limit_lines)):
        if key in by_key:
            comment, assigned = lines(by_key[key])
            comments += comment
            assignments += assigned
    return "\n".join(comments + assignments) + "\n"


class SystemdKnob(KnobFamily):
    name = "systemd"
    unchecked_on_node = f"systemd's configuration in /etc: {NOT_MOUNTED}"
    managed_paths = (DROP_IN,)

    def reads(self, profile: Profile) -> ReadSpec:
        section = profile.containers.systemd
        if section is None or (
            section.cpu_affinity is None and section.default_limit_nofile is None
        ):
            return ReadSpec()
        files = (*MAIN_FILES, *DROP_IN_GLOBS, PID1_STATUS, PID1_COMM)
        if section.default_limit_nofile is None:
            return ReadSpec(files=files)
        return ReadSpec(files=files, commands=((MANAGER_COMMAND, MANAGER_SHELL),))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        section = ctx.profile.containers.systemd
        if section is None:
            return
        if section.cpu_affinity is not None:
            cpus = format_cpulist(ctx.cpuset(section.cpu_affinity))
            # Set by the drop-in, which systemd applies only at boot.
            yield ctx.setting(self.name, CONFIG_KEY, cpus, FIELD, reboot=True)
            yield ctx.setting(self.name, EFFECT_KEY, cpus, FIELD, reboot=True, effect=True)
        if section.default_limit_nofile is not None:
            limit = str(section.default_limit_nofile)
            # Set by the drop-in and a daemon-reload: no reboot.
            yield ctx.setting(self.name, NOFILE_KEY, limit, NOFILE_FIELD)
            yield ctx.setting(self.name, NOFILE_EFFECT_KEY, limit, NOFILE_FIELD, effect=True)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == EFFECT_KEY:
            return self._pid1(readings)
        if setting.key == NOFILE_EFFECT_KEY:
            return self._manager(readings)
        files = configuration_files(readings)
        if not files:
            return Observation(
                None, "missing", f"no systemd manager configuration ({MAIN_FILES[0]})"
            )
        if setting.key == NOFILE_KEY:
            limit, source = configured_limit(files)
            if limit is None:
                return Observation(
                    None, reason="DefaultLimitNOFILE is not set: systemd's built-in default applies"
                )
            return Observation(limit, reason=f"last set in {source}")
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
    def _not_systemd(readings: Readings, what: str) -> Observation | None:
        init = readings.first_line(PID1_COMM)
        if init is not None and init != "systemd":
            return Observation(
                None, "unsupported", f"PID 1 is {init}, not systemd: nothing applies {what}"
            )
        return None

    def _manager(self, readings: Readings) -> Observation:
        unsupported = self._not_systemd(readings, "DefaultLimitNOFILE")
        if unsupported is not None:
            return unsupported
        result = readings.command(MANAGER_COMMAND)
        limit = manager_limit(result.lines) if result is not None and result.ok else None
        if limit is None:
            answer = result.text if result is not None else "not run"
            return Observation(None, "unsupported", f"systemctl show gave no limit: {answer}")
        return Observation(limit)

    def _pid1(self, readings: Readings) -> Observation:
        unsupported = self._not_systemd(readings, "CPUAffinity")
        if unsupported is not None:
            return unsupported
        for line in readings.lines(PID1_STATUS) or ():
            label, _, value = line.partition(":")
            if label == "Cpus_allowed_list":
                return Observation(format_cpulist(parse_cpulist(value)))
        return Observation(None, "unsupported", "PID 1's allowed CPUs cannot be read here")

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        keys = {setting.key for setting in settings}
        if not keys & {CONFIG_KEY, NOFILE_KEY}:
            return ()
        content = render_drop_in(settings)
        # CPUAffinity: PID 1 reads it at boot. DefaultLimitNOFILE: a daemon-reload makes the
        # manager read it now (no daemon-reexec: re-executing PID 1 on a production host is
        # not something to do behind the operator's back).
        activate = (DAEMON_RELOAD,) if NOFILE_KEY in keys else ()
        return (
            ManagedFile(DROP_IN, content, self.name, activate=activate, reboot=CONFIG_KEY in keys),
        )
