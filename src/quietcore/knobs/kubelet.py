"""The kubelet's CPU, topology and memory managers: ``containers.kubelet``.

Keys: ``kubelet/config`` (the configuration file, ``containers.kubelet.config_path``, default
``/var/lib/kubelet/config.yaml``, must exist and be a ``KubeletConfiguration``) and
``kubelet/<field>`` for each declared field, named as in ``kubelet.config.k8s.io/v1beta1``:
cpuManagerPolicy, cpuManagerPolicyOptions, topologyManagerPolicy, topologyManagerScope,
memoryManagerPolicy, reservedSystemCPUs (a CPU list), systemReserved, kubeReserved,
evictionHard. Maps are canonical ``k=v,k=v`` sorted by key. A field no file sets has the
kubelet's default.

With ``memory_manager_policy: Static`` the kubelet refuses to start unless ``reservedMemory``
(per NUMA node) adds up to exactly systemReserved + kubeReserved + evictionHard's
memory.available of memory, so ``kubelet/reservedMemory`` is derived from those: split evenly
over the NUMA nodes of the reserved (housekeeping) CPUs, where the system daemons and the
kubelet run and so allocate, the remainder on the lowest. Its canonical text is
``NODE:k=v,...;NODE:k=v,...`` by node, quantities in their largest exact binary unit.

The value is the one the kubelet computes at start: its configuration file, then each
``*.conf`` drop-in of its ``--config-dir`` in lexical order, merged over it as a JSON merge
patch (RFC 7386: a field replaces, a map merges key by key, ``null`` deletes). quietcore
converges by rendering its own drop-in, ``/etc/kubernetes/kubelet.conf.d/90-quietcore.conf``,
and reads that directory's drop-ins. A kubelet that runs without ``--config-dir`` (kubeadm does
not pass it) or with another directory ignores them, so the running kubelet's arguments are
read too and say which files count. A kubelet that is not running is assumed to start with
``--config-dir`` set to that directory.

The YAML is parsed here, on the controller: the host only sends the files' lines. ``observe``
sees the readings but not the profile, so the configuration file is the file read, outside the
drop-in directory, whose ``kind`` is ``KubeletConfiguration`` (only this family reads one);
``kubelet/config`` carries the configured path and says when it is absent or not a kubelet
configuration. A host with neither a kubelet program nor that file is not a Kubernetes node:
every key is ``unsupported`` there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NOT_MOUNTED
from quietcore.profile.cpuset import CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import KubeletSection, Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import ManagedFile, UnsafeStepError
from quietcore.topology import Topology

SECTION = "containers.kubelet"
CONFIG_KEY = "kubelet/config"
KIND = "KubeletConfiguration"
API_VERSION = "kubelet.config.k8s.io/v1beta1"
DROP_IN_DIR = "/etc/kubernetes/kubelet.conf.d"
DROP_IN_GLOB = f"{DROP_IN_DIR}/*.conf"  # the kubelet reads only files named *.conf
DROP_IN = f"{DROP_IN_DIR}/90-quietcore.conf"
NO_KUBELET = "not a Kubernetes node: no kubelet"

STATE_COMMAND = "kubelet-state"
# Prints ``installed=<path>`` for the kubelet program in the usual places, and for a running
# kubelet ``running=yes`` plus its --config-dir arguments (``arg=`` lines: the flag and the
# argument after it, which is the directory when given as two words).
STATE_SHELL = (
    "for p in /usr/bin/kubelet /usr/local/bin/kubelet /opt/bin/kubelet /usr/sbin/kubelet"
    ' /snap/bin/kubelet; do [ -x "$p" ] && echo "installed=$p" && break; done;'
    " comm=$(grep -slx kubelet /proc/[0-9]*/comm 2>/dev/null | head -n 1);"
    ' if [ -n "$comm" ]; then echo running=yes;'
    " tr '\\000' '\\n' < \"${comm%/comm}/cmdline\""
    " | grep -x -A1 -e '--config-dir' -e '--config-dir=.*' | sed 's/^/arg=/'; fi; true"
)
# The kubelet keeps its managers' assignments in state files that refuse a policy change.
STATE_FILES = {
    "cpuManagerPolicy": "/var/lib/kubelet/cpu_manager_state",
    "memoryManagerPolicy": "/var/lib/kubelet/memory_manager_state",
}
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class KubeletField:
    attr: str  # in the profile's kubelet section
    name: str  # in KubeletConfiguration v1beta1
    default: str  # what the kubelet uses when the file does not set it, canonical
    kind: Literal["text", "map", "cpus", "numa"]


FIELDS = (
    KubeletField("cpu_manager_policy", "cpuManagerPolicy", "none", "text"),
    KubeletField("cpu_manager_policy_options", "cpuManagerPolicyOptions", "", "map"),
    KubeletField("topology_manager_policy", "topologyManagerPolicy", "none", "text"),
    KubeletField("topology_manager_scope", "topologyManagerScope", "container", "text"),
    KubeletField("memory_manager_policy", "memoryManagerPolicy", "None", "text"),
    KubeletField("reserved_system_cpus", "reservedSystemCPUs", "", "cpus"),
    KubeletField("system_reserved", "systemReserved", "", "map"),
    KubeletField("kube_reserved", "kubeReserved", "", "map"),
    KubeletField(
        "eviction_hard",
        "evictionHard",
        "imagefs.available=15%,memory.available=100Mi,nodefs.available=10%,nodefs.inodesFree=5%",
        "map",
    ),
)
# Not declared: derived from memory_manager_policy Static and the reservations above.
RESERVED_MEMORY = KubeletField("memory_manager_policy", "reservedMemory", "", "numa")
RENDERED = (*FIELDS, RESERVED_MEMORY)  # the drop-in's order
BY_KEY = {f"kubelet/{field.name}": field for field in RENDERED}
DEFAULT_MEMORY_AVAILABLE = "100Mi"  # the kubelet's evictionHard default on Linux


def scalar_text(value: object) -> str:
    """A YAML scalar as the kubelet's JSON decoding sees it (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def map_text(value: dict[Any, Any]) -> str:
    return ",".join(f"{key}={scalar_text(value[key])}" for key in sorted(value, key=str))


# --- Quantities and reservedMemory ---------------------------------------------------------------

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|m)?$")
_FACTORS: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    **{u: Decimal(1024 ** (power + 1)) for power, u in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi"))},
    **{u: Decimal(1000 ** (power + 1)) for power, u in enumerate(("k", "M", "G", "T", "P"))},
}
_BINARY_UNITS = (("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))


def quantity_bytes(text: str) -> Decimal:
    """A Kubernetes quantity (``500Mi``, ``1G``, ``1.5Gi``) as a number; ``ValueError`` for
    anything else."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a quantity like 500Mi or 1Gi")
    try:
        return Decimal(match.group(1)) * _FACTORS[match.group(2) or ""]
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a quantity like 500Mi or 1Gi") from None


def format_bytes(count: int) -> str:
    """Whole bytes in the largest binary unit that holds them exactly: 1073741824 -> 1Gi."""
    for unit, size in _BINARY_UNITS:
        if count and count % size == 0:
            return f"{count // size}{unit}"
    return str(count)


def canonical_quantity(text: str) -> str:
    """``1024Mi`` and ``1Gi`` as the same text; text that is no whole byte count unchanged."""
    try:
        value = quantity_bytes(text)
    except ValueError:
        return text
    return format_bytes(int(value)) if value == value.to_integral_value() else text


def reserved_memory_bytes(section: KubeletSection) -> int:
    """What the kubelet's node allocatable holds back of memory: system + kube reserved +
    evictionHard memory.available; ``ValueError`` naming the field when not whole bytes."""
    parts = (
        ("system_reserved.memory", section.system_reserved.get("memory", "0")),
        ("kube_reserved.memory", section.kube_reserved.get("memory", "0")),
        (
            "eviction_hard.memory.available",
            section.eviction_hard.get("memory.available", DEFAULT_MEMORY_AVAILABLE),
        ),
    )
    total = Decimal(0)
    for field, text in parts:
        value = quantity_bytes(text)
        if value != value.to_integral_value():
            raise ValueError(f"{SECTION}.{field}: {text!r} is not a whole number of bytes")
        total += value
    return int(total)


def split_reserved_memory(total: int, nodes: Iterable[int]) -> dict[int, int]:
    """``total`` bytes spread evenly over ``nodes``, the remainder on the lowest: the kubelet
    wants the sum exact, and the nodes are those of the housekeeping CPUs."""
    ordered = sorted(set(nodes)) or [0]
    share, remainder = divmod(total, len(ordered))
    return {node: share + (remainder if index == 0 else 0) for index, node in enumerate(ordered)}


def numa_text(limits_by_node: Mapping[int, Mapping[str, str]]) -> str:
    return ";".join(
        f"{node}:" + map_text({key: canonical_quantity(value) for key, value in limits.items()})
        for node, limits in sorted(limits_by_node.items())
    )


def _parse_numa_text(name: str, text: str) -> list[tuple[int, list[tuple[str, str]]]]:
    nodes = []
    for entry in text.split(";") if text else []:
        node, sep, limits = entry.partition(":")
        if not sep or not node.isdigit() or not limits:
            raise UnsafeStepError(f"refusing {name} {text!r}: not NODE:k=v;NODE:k=v")
        nodes.append((int(node), _pairs(name, limits)))
    return nodes


def _pairs(name: str, text: str) -> list[tuple[str, str]]:
    pairs = [item.partition("=") for item in text.split(",") if item]
    if any(not sep or not key for key, sep, _ in pairs):
        raise UnsafeStepError(f"refusing {name} {text!r}: not k=v,k=v")
    return [(key, value) for key, _, value in pairs]


def parse_configuration(lines: Iterable[str]) -> dict[str, Any]:
    """The YAML document as a mapping; raises ``ValueError`` when it is not a
    KubeletConfiguration (``yaml.YAMLError`` when it is not YAML)."""
    document = yaml.safe_load("\n".join(lines))
    if not isinstance(document, dict) or document.get("kind") != KIND:
        kind = document.get("kind") if isinstance(document, dict) else None
        raise ValueError(f"not a {KIND} (kind: {kind})")
    return document


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386, as the kubelet merges a drop-in over its configuration."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


# --- What the host has ------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeletState:
    installed: bool
    running: bool
    config_dir: str | None  # the running kubelet's --config-dir; None when it has none


def kubelet_state(readings: Readings) -> KubeletState | None:
    """``None`` when the state was not read (an older capture, a profile without kubelet)."""
    result = readings.command(STATE_COMMAND)
    if result is None:
        return None
    args = [line.removeprefix("arg=") for line in result.lines if line.startswith("arg=")]
    config_dir = None
    for index, arg in enumerate(args):
        if arg.startswith("--config-dir="):
            config_dir = arg.partition("=")[2]
        elif arg == "--config-dir" and index + 1 < len(args):
            config_dir = args[index + 1]
    return KubeletState(
        installed=any(line.startswith("installed=") for line in result.lines),
        running="running=yes" in result.lines,
        config_dir=None if config_dir is None else (config_dir.rstrip("/") or "/"),
    )


def _in_drop_in_dir(path: str) -> bool:
    return str(PurePosixPath(path).parent) == DROP_IN_DIR


def find_configuration(readings: Readings) -> tuple[str, dict[str, Any]] | None:
    """The kubelet's configuration file among the files read: not a drop-in, and of its kind."""
    for path, lines in readings.files.items():
        if _in_drop_in_dir(path):
            continue
        if any(line.startswith("kind:") and KIND in line for line in lines):
            try:
                return path, parse_configuration(lines)
            except (yaml.YAMLError, ValueError):
                continue
    return None


@dataclass(frozen=True)
class Effective:
    config: dict[str, Any]
    set_by: dict[str, list[str]]  # top-level field -> every file that set it, in order
    files: tuple[str, ...]  # every file merged, in order
    note: str = ""  # which drop-ins count, when that is not plain


def drop_in_note(state: KubeletState | None) -> tuple[bool, str]:
    """Whether the drop-ins of ``DROP_IN_DIR`` count, and what to say about it."""
    if state is None:  # nothing known about the kubelet (an older capture): as configured
        return True, ""
    if not state.running:
        return True, f"kubelet not running: assuming it starts with --config-dir={DROP_IN_DIR}"
    if state.config_dir == DROP_IN_DIR:
        return True, ""
    if state.config_dir is None:
        return False, f"the running kubelet has no --config-dir: {DROP_IN_DIR} is ignored"
    return False, (
        f"the running kubelet reads drop-ins from {state.config_dir}, not {DROP_IN_DIR} "
        "(not read by quietcore)"
    )


def effective_configuration(readings: Readings) -> Effective | str | None:
    """The configuration the kubelet computes; ``None`` without a configuration file, the
    reason when a drop-in breaks it (the kubelet would refuse to start)."""
    found = find_configuration(readings)
    if found is None:
        return None
    path, config = found
    set_by = {name: [path] for name in config}
    files = [path]
    counts, note = drop_in_note(kubelet_state(readings))
    if counts:
        for drop_in, lines in readings.glob(DROP_IN_GLOB).items():
            try:
                patch = yaml.safe_load("\n".join(lines))
            except yaml.YAMLError as error:
                return f"drop-in {drop_in} is not YAML ({error}): the kubelet would not start"
            if patch is None:
                continue
            if not isinstance(patch, dict) or patch.get("kind", KIND) != KIND:
                return f"drop-in {drop_in} is not a {KIND}: the kubelet would not start"
            merged = merge_patch(config, patch)
            assert isinstance(merged, dict)
            config = merged
            for name in patch:
                set_by.setdefault(name, []).append(drop_in)
            files.append(drop_in)
    return Effective(config, set_by, tuple(files), note)


def field_observation(field: KubeletField, effective: Effective) -> Observation:
    config = effective.config
    if field.name not in config:
        where = ", ".join(effective.files)
        return Observation(field.default, reason=f"not set in {where}: the kubelet's default")
    value = config[field.name]
    if field.kind == "numa":
        return _numa_observation(value)
    if field.kind == "map":
        if not isinstance(value, dict):
            return Observation(scalar_text(value), "drift", "not a map")
        return Observation(map_text(value))
    if field.kind == "cpus":
        try:
            return Observation(format_cpulist(parse_cpulist(scalar_text(value))))
        except CpuSetError:
            return Observation(scalar_text(value), "drift", "not a CPU list")
    return Observation(scalar_text(value))


def _numa_observation(value: object) -> Observation:
    limits_by_node: dict[int, dict[str, str]] = {}
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        node = entry.get("numaNode") if isinstance(entry, dict) else None
        limits = entry.get("limits") if isinstance(entry, dict) else None
        if not isinstance(node, int) or isinstance(node, bool) or not isinstance(limits, dict):
            return Observation(str(value), "drift", "not a list of {numaNode, limits}")
        merged = limits_by_node.setdefault(node, {})
        merged.update({str(key): scalar_text(item) for key, item in limits.items()})
    return Observation(numa_text(limits_by_node))


def _with_reason(seen: Observation, *notes: str) -> Observation:
    reason = "; ".join(note for note in (seen.reason, *notes) if note)
    return Observation(seen.actual, seen.status, reason)


# --- What quietcore renders ---------------------------------------------------------------------


def _template_field(field: KubeletField, setting: Setting) -> dict[str, Any]:
    """One field as the drop-in template wants it; text that does not fit the field is
    refused (it would give the kubelet a configuration it rejects)."""
    where = _UNPRINTABLE.sub("?", f"{setting.field} ({setting.source or 'source unknown'})")
    values: dict[str, Any] = {"name": field.name, "kind": field.kind, "where": where}
    desired = setting.desired
    if field.kind == "map":
        values["pairs"] = _pairs(field.name, desired)
    elif field.kind == "numa":
        values["nodes"] = _parse_numa_text(field.name, desired)
    elif field.kind == "cpus":
        try:
            values["value"] = format_cpulist(parse_cpulist(desired))
        except CpuSetError as error:
            raise UnsafeStepError(f"refusing {field.name} {desired!r}: {error}") from None
    else:
        values["value"] = desired
    return values


def render_drop_in(settings: Sequence[Setting]) -> str:
    """quietcore's drop-in for these settings, from ``k8s_manifests/kubelet-drop-in.conf.j2``
    (the same text ``quietcore k8s render`` puts in a pool's files)."""
    # Imported here: jinja2 costs start-up time that only rendering needs.
    from quietcore.k8s.templates import render

    by_name = {BY_KEY[s.key].name: s for s in settings if s.key in BY_KEY}
    fields = [  # the schema's order, whatever the order of ``settings``
        _template_field(field, by_name[field.name]) for field in RENDERED if field.name in by_name
    ]
    return render(
        "kubelet-drop-in.conf.j2",
        drop_in_dir=DROP_IN_DIR,
        api_version=API_VERSION,
        kind=KIND,
        fields=fields,
    )


class KubeletKnob(KnobFamily):
    name = "kubelet"
    unchecked_on_node = f"the kubelet's configuration is outside /proc and /sys: {NOT_MOUNTED}"
    managed_paths = (DROP_IN,)

    def reads(self, profile: Profile) -> ReadSpec:
        section = profile.containers.kubelet
        if section is None or not any(getattr(section, field.attr) for field in FIELDS):
            return ReadSpec()
        return ReadSpec(
            files=(section.config_path, DROP_IN_GLOB),
            commands=((STATE_COMMAND, STATE_SHELL),),
        )

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        section = ctx.profile.containers.kubelet
        if section is None:
            return
        declared = [(field, getattr(section, field.attr)) for field in FIELDS]
        declared = [(field, value) for field, value in declared if value]
        if not declared:
            return
        path_field = f"{SECTION}.config_path"
        yield ctx.setting(self.name, CONFIG_KEY, section.config_path, path_field)
        for field, value in declared:
            if field.kind == "cpus":
                text = format_cpulist(ctx.cpuset(value))
            else:
                text = map_text(value) if field.kind == "map" else scalar_text(value)
            key = f"{self.name}/{field.name}"
            # The kubelet reads its configuration only when it starts.
            yield ctx.setting(self.name, key, text, f"{SECTION}.{field.attr}", reboot=True)
        if section.memory_manager_policy == "Static":
            yield self._reserved_memory(ctx, section)

    def _reserved_memory(self, ctx: ResolveContext, section: KubeletSection) -> Setting:
        field = f"{SECTION}.{RESERVED_MEMORY.attr}"
        try:
            total = reserved_memory_bytes(section)
        except ValueError as error:
            raise ResolveError(field, str(error)) from None
        topology = ctx.topology
        nodes = {topology.node_of(cpu) for cpu in ctx.cpus.reserved if cpu in topology.cpus}
        if not nodes:  # no housekeeping CPUs declared: the lowest node with memory
            nodes = {min((n.id for n in topology.nodes.values() if n.mem_total_kib), default=0)}
        shares = split_reserved_memory(total, nodes)
        limits = {node: {"memory": format_bytes(share)} for node, share in shares.items() if share}
        text = numa_text(limits)
        key = f"{self.name}/{RESERVED_MEMORY.name}"
        return ctx.setting(self.name, key, text, field, reboot=True)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        state = kubelet_state(readings)
        if setting.key == CONFIG_KEY:
            return self._file(setting.desired, readings, state)
        effective = effective_configuration(readings)
        if effective is None:
            if state is not None and not state.installed and not state.running:
                return Observation(None, "unsupported", NO_KUBELET)
            return Observation(
                None, "missing", f"no kubelet configuration was read (see {CONFIG_KEY})"
            )
        if isinstance(effective, str):
            return Observation(None, reason=effective)
        field = BY_KEY[setting.key]
        seen = field_observation(field, effective)
        files = effective.set_by.get(field.name, []) if field.name in effective.config else []
        if field.kind == "map" and len(files) > 1:  # maps merge key by key
            seen = _with_reason(seen, f"merged from {', '.join(files)}")
        elif files:
            seen = _with_reason(seen, f"set in {files[-1]}")
        state_file = STATE_FILES.get(field.name)
        if state_file and seen.actual is not None and seen.actual != setting.desired:
            seen = _with_reason(
                seen,
                f"changing it also needs the kubelet stopped and {state_file} removed "
                "on a drained node (`quietcore k8s rollout` does that; apply alone does not)",
            )
        return _with_reason(seen, effective.note)

    @staticmethod
    def _file(path: str, readings: Readings, state: KubeletState | None) -> Observation:
        lines = readings.lines(path)
        if lines is None:
            if state is not None and not state.installed and not state.running:
                return Observation(None, "unsupported", NO_KUBELET)
            return Observation(
                None, "missing", f"no kubelet configuration at {path}: not a Kubernetes node?"
            )
        try:
            parse_configuration(lines)
        except (yaml.YAMLError, ValueError) as error:
            return Observation(None, reason=f"{path}: {error}")
        return Observation(path)

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        if not any(setting.key in BY_KEY for setting in settings):
            return ()
        # reboot: the kubelet reads it only when it starts (a reboot restarts it).
        return (ManagedFile(DROP_IN, render_drop_in(settings), self.name, reboot=True),)
