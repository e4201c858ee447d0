"""Kernel sysctls under ``/proc/sys``: the ``kernel.sysctl`` map and every sysctl another
profile section implies (``memory.swappiness`` is ``vm.swappiness``, ``network.busy_poll_us``
is ``net.core.busy_poll``, ...).

Keys are ``sysctl/<dotted name>``. Values are compared as text after collapsing whitespace,
because the kernel separates multi-number values with tabs (``tcp_rmem`` reads
``4096<TAB>131072<TAB>6291456``) while profiles write lists.

Converging: a runtime write to ``/proc/sys`` now, and ``/etc/sysctl.d/zz-quietcore.conf`` so
systemd-sysctl (or procps at boot) sets the same values again at every boot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NodeCheck
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile, TcpSection, Watchdogs
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import KERNEL_VALUE, ManagedFile, Step, UnsafeStepError, Write
from quietcore.topology import Topology

SysctlInput = bool | int | str | list[int]

# Files in /etc/sysctl.d, /run/sysctl.d and /usr/lib/sysctl.d are applied in the lexical order
# of their names, the last value winning: "zz-" sorts after Debian's 99-sysctl.conf (the
# /etc/sysctl.conf symlink), so quietcore's values are the ones the host ends up with.
CONF = "/etc/sysctl.d/zz-quietcore.conf"
# The schema's key pattern, checked again here because the name becomes a file path: dotted
# words, no empty word (so no "..", no leading or trailing dot), no "/".
_NAME = re.compile(r"^[a-z0-9_]+(?:\.[a-zA-Z0-9_-]+)+$")
# Comment text from profile paths and fields: anything but a control character (a newline
# would start a line sysctl.d reads as a setting).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def canonical_value(value: SysctlInput) -> str:
    """The text the kernel prints for ``value``: booleans as 1/0, lists space-separated."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return " ".join(str(number) for number in value)
    return " ".join(str(value).split())


def sysctl_path(name: str) -> str:
    """``net.core.busy_poll`` -> ``/proc/sys/net/core/busy_poll`` (names are schema-checked)."""
    return "/proc/sys/" + name.replace(".", "/")


def checked_name(key: str) -> str:
    """The sysctl name of a ``sysctl/<name>`` key, refused unless it is plain dotted words."""
    name = key.removeprefix("sysctl/")
    if name == key or not _NAME.fullmatch(name):
        raise UnsafeStepError(f"refusing sysctl key {key!r}: not sysctl/<dotted words>")
    return name


def _checked_value(name: str, value: str) -> str:
    if not value or not KERNEL_VALUE.fullmatch(value):
        raise UnsafeStepError(f"refusing sysctl {name} value {value!r}")
    return value


def _comment(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)


def _declarations(profile: Profile) -> Iterator[tuple[str, SysctlInput, str]]:
    """Every (sysctl name, value, profile field) the profile declares, dedicated sections
    first and the generic ``kernel.sysctl`` map last, duplicates included."""
    network, kernel = profile.network, profile.kernel
    tcp = network.tcp or TcpSection()
    watchdogs = kernel.watchdogs or Watchdogs()
    implied: list[tuple[str, SysctlInput | None, str]] = [
        ("vm.swappiness", profile.memory.swappiness, "memory.swappiness"),
        ("kernel.numa_balancing", profile.numa.balancing, "numa.balancing"),
        ("net.ipv4.tcp_rmem", tcp.rmem, "network.tcp.rmem"),
        ("net.ipv4.tcp_wmem", tcp.wmem, "network.tcp.wmem"),
        (
            "net.ipv4.tcp_congestion_control",
            tcp.congestion_control,
            "network.tcp.congestion_control",
        ),
        ("net.ipv4.tcp_fastopen", tcp.fastopen, "network.tcp.fastopen"),
        ("net.core.rmem_max", network.rmem_max, "network.rmem_max"),
        ("net.core.wmem_max", network.wmem_max, "network.wmem_max"),
        ("net.core.busy_poll", network.busy_poll_us, "network.busy_poll_us"),
        ("net.core.busy_read", network.busy_read_us, "network.busy_read_us"),
        ("net.core.netdev_budget", network.netdev_budget, "network.netdev_budget"),
        (
            "net.core.netdev_budget_usecs",
            network.netdev_budget_usecs,
            "network.netdev_budget_usecs",
        ),
        ("kernel.sched_rt_runtime_us", kernel.sched_rt_runtime_us, "kernel.sched_rt_runtime_us"),
        ("kernel.nmi_watchdog", watchdogs.nmi, "kernel.watchdogs.nmi"),
        ("kernel.soft_watchdog", watchdogs.soft, "kernel.watchdogs.soft"),
    ]
    for name, value, field in implied:
        if value is not None:
            yield name, value, field
    for name, value in kernel.sysctl.items():
        yield name, value, f"kernel.sysctl.{name}"


def declared_sysctls(profile: Profile) -> dict[str, tuple[str, str]]:
    """Sysctl name -> (canonical value, profile field) for everything the profile declares.

    The same sysctl declared twice with different values is refused, naming the later field.
    """

    declared: dict[str, tuple[str, str]] = {}
    for name, raw, field in _declarations(profile):
        value = canonical_value(raw)
        if name in declared and declared[name][0] != value:
            first_value, first_field = declared[name]
            raise ResolveError(
                field,
                f"sets {name} to {value!r} but {first_field} already sets it to {first_value!r}",
            )
        declared.setdefault(name, (value, field))
    return declared


class SysctlKnob(KnobFamily):
    name = "sysctl"
    managed_paths = (CONF,)

    def reads(self, profile: Profile) -> ReadSpec:
        # Conflicts are refused by ``desired``; reading a sysctl twice-declared is harmless.
        names = dict.fromkeys(name for name, _, _ in _declarations(profile))
        return ReadSpec(files=tuple(sysctl_path(name) for name in names))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        for name, (value, field) in declared_sysctls(ctx.profile).items():
            yield ctx.setting(self.name, f"{self.name}/{name}", value, field)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        name = setting.key.removeprefix(f"{self.name}/")
        lines = readings.lines(sysctl_path(name))
        if lines is None:
            return Observation(None, "missing", f"the running kernel has no sysctl {name}")
        return Observation(canonical_value(" ".join(lines)))

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        name = checked_name(key)
        if value is None:  # the sysctl did not exist before: nothing to restore
            return ()
        # The kernel parses space-separated numbers as the tabs it prints, so the canonical
        # form is also what it wants.
        return (Write(sysctl_path(name), _checked_value(name, value)),)

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        if not settings:
            return ()
        lines = [
            "# Owned by quietcore: rendered in full at every apply, edits here are overwritten;",
            "# `quietcore rollback` removes this file. Named zz-quietcore.conf so that it sorts",
            "# after Debian's 99-sysctl.conf and its values win. Each value follows a comment",
            "# naming the profile field it comes from and where that field was declared",
            "# (sysctl.d has no end-of-line comments).",
        ]
        # Sorted by name, so the file depends on the settings and never on their order.
        for setting in sorted(settings, key=lambda s: s.key):
            name = checked_name(setting.key)
            where = _comment(setting.source or "source unknown")
            lines += ["", f"# {_comment(setting.field)} ({where})"]
            lines.append(f"{name} = {_checked_value(name, setting.desired)}")
        # No activation: apply has already written every value at runtime.
        return (ManagedFile(CONF, "\n".join(lines) + "\n", self.name),)

    def node_check(self, setting: Setting) -> NodeCheck:
        name = setting.key.removeprefix("sysctl/")
        return NodeCheck(
            setting.key,
            sysctl_path(name),
            "exact",
            setting.desired,
            absent_reason=f"the running kernel has no sysctl {name}",
        )
