"""The kubelet's CPU, topology and memory managers: ``containers.kubelet``.

Keys: ``kubelet/config`` (the configuration file, ``containers.kubelet.config_path``, default
``/var/lib/kubelet/config.yaml``, must exist and be a ``KubeletConfiguration``) and
``kubelet/<field>`` for each declared field, named as in ``kubelet.config.k8s.io/v1beta1``:
cpuManagerPolicy, cpuManagerPolicyOptions, topologyManagerPolicy, topologyManagerScope,
memoryManagerPolicy, reservedSystemCPUs (a CPU list), systemReserved, kubeReserved. Maps are
canonical ``k=v,k=v`` sorted by key. A field the file does not set has the kubelet's default.

The YAML is parsed here, on the controller: the host only sends the file's lines. ``observe``
sees the readings but not the profile, so a field finds the configuration as the file read
whose ``kind`` is ``KubeletConfiguration`` (only this family reads one); ``kubelet/config``
carries the configured path and says when it is absent or not a kubelet configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.profile.cpuset import CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.topology import Topology

SECTION = "containers.kubelet"
CONFIG_KEY = "kubelet/config"
KIND = "KubeletConfiguration"


@dataclass(frozen=True)
class KubeletField:
    attr: str  # in the profile's kubelet section
    name: str  # in KubeletConfiguration v1beta1
    default: str  # what the kubelet uses when the file does not set it, canonical
    kind: Literal["text", "map", "cpus"]


FIELDS = (
    KubeletField("cpu_manager_policy", "cpuManagerPolicy", "none", "text"),
    KubeletField("cpu_manager_policy_options", "cpuManagerPolicyOptions", "", "map"),
    KubeletField("topology_manager_policy", "topologyManagerPolicy", "none", "text"),
    KubeletField("topology_manager_scope", "topologyManagerScope", "container", "text"),
    KubeletField("memory_manager_policy", "memoryManagerPolicy", "None", "text"),
    KubeletField("reserved_system_cpus", "reservedSystemCPUs", "", "cpus"),
    KubeletField("system_reserved", "systemReserved", "", "map"),
    KubeletField("kube_reserved", "kubeReserved", "", "map"),
)
BY_KEY = {f"kubelet/{field.name}": field for field in FIELDS}


def scalar_text(value: object) -> str:
    """A YAML scalar as the kubelet's JSON decoding sees it (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def map_text(value: dict[Any, Any]) -> str:
    return ",".join(f"{key}={scalar_text(value[key])}" for key in sorted(value, key=str))


def parse_configuration(lines: Iterable[str]) -> dict[str, Any]:
    """The YAML document as a mapping; raises ``ValueError`` when it is not a
    KubeletConfiguration (``yaml.YAMLError`` when it is not YAML)."""
    document = yaml.safe_load("\n".join(lines))
    if not isinstance(document, dict) or document.get("kind") != KIND:
        kind = document.get("kind") if isinstance(document, dict) else None
        raise ValueError(f"not a {KIND} (kind: {kind})")
    return document


def find_configuration(readings: Readings) -> tuple[str, dict[str, Any]] | None:
    for path, lines in readings.files.items():
        if any(line.startswith("kind:") and KIND in line for line in lines):
            try:
                return path, parse_configuration(lines)
            except (yaml.YAMLError, ValueError):
                continue
    return None


def field_observation(field: KubeletField, path: str, config: dict[str, Any]) -> Observation:
    if field.name not in config:
        return Observation(field.default, reason=f"not set in {path}: the kubelet's default")
    value = config[field.name]
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


class KubeletKnob(KnobFamily):
    name = "kubelet"

    def reads(self, profile: Profile) -> ReadSpec:
        section = profile.containers.kubelet
        if section is None or not any(getattr(section, field.attr) for field in FIELDS):
            return ReadSpec()
        return ReadSpec(files=(section.config_path,))

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
            yield ctx.setting(self.name, key, text, f"{SECTION}.{field.attr}")

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == CONFIG_KEY:
            return self._file(setting.desired, readings)
        found = find_configuration(readings)
        if found is None:
            return Observation(
                None, "missing", f"no kubelet configuration was read (see {CONFIG_KEY})"
            )
        return field_observation(BY_KEY[setting.key], *found)

    @staticmethod
    def _file(path: str, readings: Readings) -> Observation:
        lines = readings.lines(path)
        if lines is None:
            return Observation(
                None, "missing", f"no kubelet configuration at {path}: not a Kubernetes node?"
            )
        try:
            parse_configuration(lines)
        except (yaml.YAMLError, ValueError) as error:
            return Observation(None, reason=f"{path}: {error}")
        return Observation(path)
