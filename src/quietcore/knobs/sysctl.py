"""Kernel sysctls under ``/proc/sys``: the ``kernel.sysctl`` map and every sysctl another
profile section implies (``memory.swappiness`` is ``vm.swappiness``, ``network.busy_poll_us``
is ``net.core.busy_poll``, ...).

Keys are ``sysctl/<dotted name>``. Values are compared as text after collapsing whitespace,
because the kernel separates multi-number values with tabs (``tcp_rmem`` reads
``4096<TAB>131072<TAB>6291456``) while profiles write lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile, TcpSection, Watchdogs
from quietcore.readings import Readings, ReadSpec
from quietcore.topology import Topology

SysctlInput = bool | int | str | list[int]


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
