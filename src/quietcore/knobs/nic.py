"""Per-NIC settings: each ``network.interfaces`` rule, applied to every interface of the host
whose name matches the rule's shell-style pattern (``ens*``, ``eth?``).

Keys, per matching interface IF:

- ``nic/IF/coalesce/<ethtool name>`` (rx-usecs, tx-usecs, rx-frames, tx-frames, adaptive-rx,
  adaptive-tx as ``on``/``off``) from ``ethtool -c``;
- ``nic/IF/rings/rx`` and ``nic/IF/rings/tx`` from ``ethtool -g`` (current, not maximum);
- ``nic/IF/channels/combined`` from ``ethtool -l`` (a number, or the size of a CPU set);
- ``nic/IF/rx-Q/rps_cpus`` and ``nic/IF/tx-Q/xps_cpus`` for every queue, from sysfs masks.

A rule that matches no interface is not silently satisfied: it becomes the single key
``nic/<pattern>/match``, reported ``missing`` with the interfaces the host does have.
Two rules giving one interface different values are refused, naming the later field.

Converging: ``ethtool -C/-G/-L`` and writes of the steering masks, now and again at every boot
(the NIC forgets them when the driver is reloaded or the host reboots). Interface names come
from the host, so each is checked before it goes into an argument or a path.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting, step_cpus
from quietcore.knobs.node_check import NOT_MOUNTED, Need, NodeCheck, Unchecked
from quietcore.profile.cpuset import (
    CpuSetError,
    format_cpulist,
    format_cpumask,
    parse_cpumask,
)
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import InterfaceRule, Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import Run, Step, UnsafeStepError, Write
from quietcore.topology import Interface, Topology

NET = "/sys/class/net"
ETHTOOL_COMMAND = "nic-ethtool"
ETHTOOL_ABSENT = "@nic-absent"
ETHTOOL_SECTION = "@nic"
ETHTOOL_RC = "@nic-rc"
# ethtool -c/-g/-l for every interface backed by a device. Virtual interfaces (veth, bridges,
# lo: hundreds on a Kubernetes node) are skipped: each ethtool run costs a process.
ETHTOOL_SHELL = (
    'PATH="$PATH:/usr/sbin:/sbin";'
    f" command -v ethtool >/dev/null 2>&1 || {{ echo '{ETHTOOL_ABSENT}'; exit 0; }};"
    ' for dev in /sys/class/net/*; do [ -e "$dev/device" ] || continue; name=${dev##*/};'
    f' for opt in -c -g -l; do echo "{ETHTOOL_SECTION} $name $opt";'
    f' ethtool "$opt" "$name" 2>&1; echo "{ETHTOOL_RC} $?"; done; done'
)

COALESCE = {
    "rx_usecs": "rx-usecs",
    "tx_usecs": "tx-usecs",
    "rx_frames": "rx-frames",
    "tx_frames": "tx-frames",
    "adaptive_rx": "adaptive-rx",
    "adaptive_tx": "adaptive-tx",
}
CURRENT = "Current hardware settings"
MAXIMUMS = "Pre-set maximums"
# Key kind -> (ethtool option, section of its output, name -> ethtool's label).
ETHTOOL_KEYS = {
    "coalesce": ("-c", None, {name: name for name in COALESCE.values()}),
    "rings": ("-g", CURRENT, {"rx": "RX", "tx": "TX"}),
    "channels": ("-l", CURRENT, {"combined": "Combined"}),
}


@dataclass(frozen=True)
class Steering:
    """Receive / transmit packet steering: which CPUs handle a queue's packets."""

    field: str  # the InterfaceRule attribute
    side: str  # the queue directory prefix
    file: str
    feature: str

    def queues(self, interface: Interface) -> int:
        return interface.rx_queues if self.side == "rx" else interface.tx_queues


STEERING = {
    s.file: s
    for s in (Steering("rps", "rx", "rps_cpus", "RPS"), Steering("xps", "tx", "xps_cpus", "XPS"))
}

# Interface names quietcore puts into ethtool arguments and sysfs paths: at most 15 bytes
# (IFNAMSIZ 16 with the NUL), no '/', ':', whitespace or quotes, and no leading '-' that
# ethtool would take for an option ('.' and '..' are excluded by the first character).
_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,14}$")
_QUEUE = re.compile(r"^(rx|tx)-(0|[1-9][0-9]*)$")
_NUMBER = re.compile(r"^(0|[1-9][0-9]*)$")
# Key kind -> (ethtool option, the items it sets, the values those take).
ETHTOOL_SET = {
    "coalesce": ("-C", frozenset(COALESCE.values())),
    "rings": ("-G", frozenset({"rx", "tx"})),
    "channels": ("-L", frozenset({"combined"})),
}
_ADAPTIVE = re.compile(r"^Adaptive RX:\s*(\S+)\s+TX:\s*(\S+)")


@dataclass(frozen=True)
class EthtoolAnswer:
    lines: tuple[str, ...]
    returncode: int

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines if line.strip())


def ethtool_answers(readings: Readings) -> dict[tuple[str, str], EthtoolAnswer] | None:
    """(interface, option) -> ethtool's answer; ``None`` when ethtool is not installed."""
    result = readings.command(ETHTOOL_COMMAND)
    if result is None or ETHTOOL_ABSENT in result.lines:
        return None
    answers: dict[tuple[str, str], EthtoolAnswer] = {}
    current: tuple[str, str] | None = None
    lines: list[str] = []
    for line in result.lines:
        words = line.split()
        if len(words) == 3 and words[0] == ETHTOOL_SECTION:
            current, lines = (words[1], words[2]), []
        elif len(words) == 2 and words[0] == ETHTOOL_RC and current is not None:
            answers[current] = EthtoolAnswer(tuple(lines), int(words[1]))
            current = None
        elif current is not None:
            lines.append(line)
    return answers


def ethtool_values(lines: Iterable[str], section: str | None) -> dict[str, str]:
    """``label: value`` pairs of ethtool output, only those under ``section`` when given
    (``Pre-set maximums`` and ``Current hardware settings`` repeat the same labels)."""
    values: dict[str, str] = {}
    current = None
    for line in lines:
        adaptive = _ADAPTIVE.match(line.strip())
        if adaptive:
            values["adaptive-rx"], values["adaptive-tx"] = adaptive.groups()
            continue
        label, sep, value = line.partition(":")
        if not sep:
            continue
        if not value.strip():
            current = label.strip()
        elif section is None or current == section:
            values.setdefault(label.strip(), value.strip())
    return values


def matching(pattern: str, topology: Topology) -> list[str]:
    return sorted(name for name in topology.interfaces if fnmatch.fnmatchcase(name, pattern))


def _text(value: bool | int) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def checked_interface(name: str) -> str:
    if not _IFNAME.fullmatch(name):
        raise UnsafeStepError(f"refusing interface name {name!r}")
    return name


def _ethtool_step(interface: str, kind: str, item: str, value: str) -> Run:
    option, items = ETHTOOL_SET[kind]
    # adaptive-rx/tx take on/off (as observe reports them); everything else a number.
    allowed = value in ("on", "off") if item.startswith("adaptive-") else _NUMBER.match(value)
    if item not in items or not allowed:
        raise UnsafeStepError(f"refusing ethtool {option} {interface} {item} {value!r}")
    return Run(("ethtool", option, interface, item, value))


def _steering_write(interface: str, queue: str, file: str, value: str, possible: int) -> Write:
    match = _QUEUE.fullmatch(queue)
    steering = STEERING.get(file)
    if match is None or steering is None or match.group(1) != steering.side:
        raise UnsafeStepError(f"refusing {interface}/{queue}/{file}: not a steering file")
    path = f"{NET}/{interface}/queues/{queue}/{file}"
    # An empty set is a mask of 0, which turns steering off (the kernel's default).
    cpus = step_cpus(value, path, allow_empty=True)
    return Write(path, format_cpumask(cpus, possible))


def _beyond_maximum(
    seen: Observation, desired: str, readings: Readings, interface: str, kind: str, item: str
) -> Observation:
    """A ring size or channel count above the driver's maximum can never be set (the kernel
    refuses it): ``unsupported`` rather than a drift that every apply would fail on."""
    answers = ethtool_answers(readings)
    if seen.status is not None or kind == "coalesce" or answers is None:
        return seen
    option, _, labels = ETHTOOL_KEYS[kind]
    answer = answers.get((interface, option))
    maximum = ethtool_values(answer.lines, MAXIMUMS).get(labels[item]) if answer else None
    if maximum and maximum.isdigit() and desired.isdigit() and int(desired) > int(maximum):
        return Observation(
            seen.actual, "unsupported", f"{interface} offers at most {maximum} ({item})"
        )
    return seen


class NicKnob(KnobFamily):
    name = "nic"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        rules = profile.network.interfaces
        files = []
        for steering in STEERING.values():
            if any(getattr(rule, steering.field) is not None for rule in rules):
                files.append(f"{NET}/*/queues/{steering.side}-*/{steering.file}")
        ethtool = any(
            value is not None
            for rule in rules
            for value in (rule.coalesce, rule.rings, rule.channels)
        )
        commands = ((ETHTOOL_COMMAND, ETHTOOL_SHELL),) if ethtool else ()
        return ReadSpec(files=tuple(files), commands=commands)

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:

        chosen: dict[str, Setting] = {}
        for index, rule in enumerate(ctx.profile.network.interfaces):
            field = f"network.interfaces.{index}"
            names = matching(rule.match, ctx.topology)
            if names:
                settings = [
                    setting
                    for name in names
                    for setting in self._rule(ctx, rule, field, ctx.topology.interfaces[name])
                ]
            else:
                key = f"{self.name}/{rule.match}/match"
                settings = [ctx.setting(self.name, key, rule.match, f"{field}.match")]
            for setting in settings:
                earlier = chosen.setdefault(setting.key, setting)
                if earlier.desired != setting.desired:
                    raise ResolveError(
                        setting.field,
                        f"sets {setting.key} to {setting.desired!r} but {earlier.field} "
                        f"already sets it to {earlier.desired!r}",
                    )
        return list(chosen.values())

    def _rule(
        self, ctx: ResolveContext, rule: InterfaceRule, field: str, interface: Interface
    ) -> Iterator[Setting]:
        base = f"{self.name}/{interface.name}"
        if rule.coalesce is not None:
            for attr, name in COALESCE.items():
                value = getattr(rule.coalesce, attr)
                if value is not None:
                    key, source = f"{base}/coalesce/{name}", f"{field}.coalesce.{attr}"
                    yield ctx.setting(self.name, key, _text(value), source)
        if rule.rings is not None:
            for side in ("rx", "tx"):
                count = getattr(rule.rings, side)
                if count is not None:
                    key, source = f"{base}/rings/{side}", f"{field}.rings.{side}"
                    yield ctx.setting(self.name, key, str(count), source)
        if rule.channels is not None:
            channels = rule.channels
            count = channels if isinstance(channels, int) else len(ctx.cpuset(channels))
            key = f"{base}/channels/combined"
            yield ctx.setting(self.name, key, str(count), f"{field}.channels")
        for steering in STEERING.values():
            spec = getattr(rule, steering.field)
            if spec is not None:
                cpus = format_cpulist(ctx.cpuset(spec))
                for queue in range(steering.queues(interface)):
                    key = f"{base}/{steering.side}-{queue}/{steering.file}"
                    yield ctx.setting(self.name, key, cpus, f"{field}.{steering.field}")

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        parts = setting.key.split("/")
        if len(parts) == 3:
            return self._match(parts[1], topology)
        _, interface, kind, item = parts
        if kind in ETHTOOL_KEYS:
            seen = self._ethtool(readings, topology, interface, kind, item)
            return _beyond_maximum(seen, setting.desired, readings, interface, kind, item)
        return self._queue(readings, topology, interface, kind, item)

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key.endswith("/match") and setting.key.count("/") == 2:
            return bool(actual)
        return super().matches(setting, actual)

    @staticmethod
    def _match(pattern: str, topology: Topology) -> Observation:
        names = matching(pattern, topology)
        if names:
            return Observation(",".join(names))
        have = ", ".join(sorted(topology.interfaces)) or "none"
        return Observation(
            None, "missing", f"no interface matches {pattern} (this host has: {have})"
        )

    @staticmethod
    def _ethtool(
        readings: Readings, topology: Topology, interface: str, kind: str, item: str
    ) -> Observation:
        answers = ethtool_answers(readings)
        if answers is None:
            return Observation(None, "unsupported", "ethtool is not installed")
        option, section, labels = ETHTOOL_KEYS[kind]
        answer = answers.get((interface, option))
        if answer is None:
            if interface not in topology.interfaces:
                return Observation(None, "missing", f"no interface {interface} on this host")
            return Observation(
                None,
                "unsupported",
                f"{interface} is a virtual interface (no device): ethtool settings are read "
                "for device-backed NICs only",
            )
        if answer.returncode != 0:
            if "not supported" in answer.text.lower():
                return Observation(
                    None, "unsupported", f"ethtool {option} {interface}: {answer.text}"
                )
            return Observation(None, reason=f"ethtool {option} {interface} failed: {answer.text}")
        value = ethtool_values(answer.lines, section).get(labels[item])
        if value is None or value == "n/a":
            device = topology.interfaces.get(interface)
            driver = device.driver if device and device.driver else "its"
            return Observation(
                None, "unsupported", f"{driver} driver of {interface} does not offer {item}"
            )
        return Observation(value)

    @staticmethod
    def _queue(
        readings: Readings, topology: Topology, interface: str, queue: str, file: str
    ) -> Observation:
        text = readings.first_line(f"{NET}/{interface}/queues/{queue}/{file}")
        # The kernel never prints an empty mask: an empty reading is a read it refused (the
        # bundle lists files it could open but not read as empty).
        if text:
            try:
                return Observation(format_cpulist(parse_cpumask(text)))
            except CpuSetError:
                return Observation(text, "drift", "not a CPU mask")
        device = topology.interfaces.get(interface)
        if device is None:
            return Observation(None, "missing", f"no interface {interface} on this host")
        steering = STEERING[file]
        count = steering.queues(device)
        if int(queue.removeprefix(f"{steering.side}-")) >= count:
            return Observation(None, "missing", f"{interface} has no queue {queue} now")
        if steering.feature == "XPS" and count == 1:
            # The kernel answers ENOENT for xps_cpus of a single-queue device.
            return Observation(
                None, "unsupported", f"XPS needs a multi-queue device; {interface} has one tx queue"
            )
        return Observation(None, "unsupported", f"kernel without {steering.feature} (no {file})")

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "match":  # a rule matching nothing sets nothing
            return ()
        if len(parts) != 4 or parts[0] != self.name:
            raise UnsafeStepError(f"refusing key {key!r}: not nic/<interface>/<kind>/<item>")
        _, interface, kind, item = parts
        checked_interface(interface)
        if value is None:  # nothing was there to restore (no such queue or interface)
            return ()
        if kind in ETHTOOL_SET:
            return (_ethtool_step(interface, kind, item, value),)
        return (_steering_write(interface, kind, item, value, topology.possible_count),)

    def node_check(self, setting: Setting) -> NodeCheck | Unchecked:
        parts = setting.key.split("/")
        if len(parts) == 3:  # nic/<pattern>/match: some interface matches the rule
            return NodeCheck(
                setting.key,
                f"{NET}/{parts[1]}",
                "exists",
                setting.desired,
                absent_reason=f"no interface matches {parts[1]}",
            )
        _, interface, queue, item = parts
        if queue in ETHTOOL_KEYS:
            return Unchecked(
                setting.key, f"read through ethtool's ioctls, not a file: {NOT_MOUNTED}"
            )
        device = f"{NET}/{interface}"
        return NodeCheck(
            setting.key,
            f"{device}/queues/{queue}/{item}",
            "cpumask",
            setting.desired,
            "unsupported",
            f"kernel without {item} for {queue} (or a single-queue device)",
            needs=(
                Need(device, "missing", f"no interface {interface}"),
                Need(f"{device}/queues/{queue}", "missing", f"{interface} has no queue {queue}"),
            ),
            # The kernel never prints an empty mask; quietcore's bundle shows a refused read so.
            empty_is_absent=True,
        )
