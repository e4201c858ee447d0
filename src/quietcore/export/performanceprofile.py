"""A quietcore profile as an OpenShift PerformanceProfile (performance.openshift.io/v2).

The Node Tuning Operator turns a PerformanceProfile into a KubeletConfig, a Tuned profile, a
RuntimeClass and machine configs for one MachineConfigPool. It derives much by itself (the
isolation kernel arguments from ``cpu.isolated``, the static CPU manager, the memory manager
under ``restricted``/``single-numa-node``), so the export maps the profile onto its fields,
passes kubelet settings it has no field for through its ``kubeletconfig.experimental``
annotation, and lists everything else as not expressed (sysctls, THP, workqueues, ...: those
need an additional Tuned object on top of the one the operator generates).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from quietcore.export import CpuSets, Export, cpu_sets
from quietcore.knobs.cmdline import effective_isolcpus_flags
from quietcore.profile.cpuset import format_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import KubeletSection, Profile
from quietcore.topology import Topology

API_VERSION = "performance.openshift.io/v2"
KIND = "PerformanceProfile"
KUBELET_ANNOTATION = "kubeletconfig.experimental"
NOT_EXPRESSED_ANNOTATION = "quietcore.io/not-expressed"
# A node role becomes a label key's name part and a MachineConfigPool name: DNS-1123 label.
_ROLE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _cpu(profile: Profile, cpus: CpuSets) -> dict[str, Any]:
    plan = cpus.plan
    if not plan.reserved or not plan.isolated:
        raise ResolveError(
            "cpu.isolated" if plan.reserved else "cpu.reserved",
            "a PerformanceProfile needs both reserved and isolated CPUs (spec.cpu)",
        )
    cpu: dict[str, Any] = {
        "reserved": format_cpulist(plan.reserved),
        "isolated": format_cpulist(plan.isolated),
    }
    section = profile.cpu
    if "isolcpus" in section.isolation and "domain" in effective_isolcpus_flags(
        section.isolcpus_flags
    ):
        # isolcpus=domain takes isolated CPUs out of scheduler load balancing.
        cpu["balanceIsolated"] = False
    return cpu


def _hugepages(profile: Profile) -> dict[str, Any] | None:
    section = profile.hugepages
    if section.default_size is None and not section.pages:
        return None
    hugepages: dict[str, Any] = {}
    if section.default_size is not None:
        hugepages["defaultHugepagesSize"] = section.default_size
    if section.pages:
        hugepages["pages"] = [
            {"size": pool.size, "count": pool.pages}
            | ({} if pool.node is None else {"node": pool.node})
            for pool in section.pages
        ]
    return hugepages


def _kubelet_snippet(kubelet: KubeletSection) -> dict[str, Any]:
    """Kubelet fields the operator does not own, for its experimental annotation."""
    snippet: dict[str, Any] = {}
    if kubelet.cpu_manager_policy_options:
        snippet["cpuManagerPolicyOptions"] = dict(kubelet.cpu_manager_policy_options)
    if kubelet.topology_manager_scope is not None:
        snippet["topologyManagerScope"] = kubelet.topology_manager_scope
    if kubelet.system_reserved:
        snippet["systemReserved"] = dict(kubelet.system_reserved)
    if kubelet.kube_reserved:
        snippet["kubeReserved"] = dict(kubelet.kube_reserved)
    return snippet


def _kubelet_notes(kubelet: KubeletSection, cpus: CpuSets) -> list[str]:
    notes = []
    if kubelet.cpu_manager_policy == "none":
        notes.append(
            "containers.kubelet.cpu_manager_policy: none (the operator always sets static)"
        )
    policy = kubelet.topology_manager_policy
    if kubelet.memory_manager_policy == "Static" and policy not in (
        "restricted",
        "single-numa-node",
    ):
        notes.append(
            "containers.kubelet.memory_manager_policy: Static (the operator enables it only "
            "with numa.topologyPolicy restricted or single-numa-node)"
        )
    if kubelet.memory_manager_policy == "None" and policy in ("restricted", "single-numa-node"):
        notes.append("containers.kubelet.memory_manager_policy: None (the operator sets Static)")
    if kubelet.reserved_system_cpus is not None:
        wanted = cpus.resolve(
            kubelet.reserved_system_cpus, "containers.kubelet.reserved_system_cpus"
        )
        if wanted != cpus.plan.reserved:
            notes.append(
                "containers.kubelet.reserved_system_cpus: the operator uses spec.cpu.reserved"
            )
    return notes


def _net(profile: Profile, cpus: CpuSets) -> tuple[dict[str, Any] | None, list[str]]:
    """userLevelNetworking sets the queue count of the matched NICs to the number of
    reserved CPUs: exactly ``channels: reserved``; other NIC settings are not expressed."""
    devices, notes = [], []
    for index, rule in enumerate(profile.network.interfaces):
        field = f"network.interfaces.{index}"
        channels = rule.channels
        if (
            channels is not None
            and not isinstance(channels, int)
            and cpus.resolve(channels, f"{field}.channels") == cpus.plan.reserved
        ):
            devices.append({"interfaceName": rule.match})
            channels = None
        rest = [
            name
            for name, value in (
                ("channels", channels),
                ("coalesce", rule.coalesce),
                ("rings", rule.rings),
                ("rps", rule.rps),
                ("xps", rule.xps),
            )
            if value is not None
        ]
        notes += [f"{field}.{name} ({rule.match})" for name in rest]
    if not devices:
        return None, notes
    return {"userLevelNetworking": True, "devices": devices}, notes


def _plain_notes(profile: Profile) -> list[str]:
    """Sections the PerformanceProfile has no field for at all."""
    checks: list[tuple[str, object]] = [
        ("cpu.governor", profile.cpu.governor),
        ("cpu.energy_perf_bias", profile.cpu.energy_perf_bias),
        ("cpu.min_perf_pct", profile.cpu.min_perf_pct),
        ("cpu.boost", profile.cpu.boost),
        ("kernel.sysctl", profile.kernel.sysctl),
        ("kernel.workqueue_mask", profile.kernel.workqueue_mask),
        ("kernel.sched_rt_runtime_us", profile.kernel.sched_rt_runtime_us),
        ("kernel.watchdogs", profile.kernel.watchdogs),
        ("kernel.mce_ignore_ce", profile.kernel.mce_ignore_ce),
        ("memory", profile.memory.model_dump(exclude_none=True)),
        ("numa.balancing", profile.numa.balancing),
        ("network sysctls", profile.network.model_dump(exclude_none=True, exclude={"interfaces"})),
        ("containers.systemd", profile.containers.systemd),
        ("verify.jitter", profile.verify.jitter),
    ]
    notes = [field for field, value in checks if value not in (None, {}, [])]
    if profile.cpu.isolation:
        notes.append(
            "cpu.isolation "
            f"({', '.join(profile.cpu.isolation)}): the operator derives its own isolation "
            "arguments from spec.cpu.isolated"
        )
    return notes


def performance_profile(
    loaded: LoadedProfile, topology: Topology | None = None, pool: str | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The PerformanceProfile object for the node role ``pool`` (default: the profile name),
    and the profile fields it does not express."""
    profile = loaded.profile
    role = pool or profile.name
    if not _ROLE.match(role):
        raise ResolveError(
            "name", f"{role!r} is not a valid node role (lowercase letters, digits and '-')"
        )
    cpus = cpu_sets(loaded, topology)
    spec: dict[str, Any] = {"cpu": _cpu(profile, cpus)}
    annotations: dict[str, str] = {}
    notes = _plain_notes(profile)
    if (hugepages := _hugepages(profile)) is not None:
        spec["hugepages"] = hugepages
    arguments = list(profile.kernel.cmdline)
    if profile.irq.affinity is not None:
        irq_cpus = cpus.resolve(profile.irq.affinity, "irq.affinity")
        arguments.insert(0, f"irqaffinity={format_cpulist(irq_cpus)}")
        # IRQs kept off the isolated CPUs for every pod, not only annotated ones.
        spec["globallyDisableIrqLoadBalancing"] = not irq_cpus & cpus.plan.isolated
    elif profile.irq.irqbalance == "ban-isolated":
        spec["globallyDisableIrqLoadBalancing"] = True
    if arguments:
        spec["additionalKernelArgs"] = arguments
    kubelet = profile.containers.kubelet
    if kubelet is not None:
        if kubelet.topology_manager_policy is not None:
            spec["numa"] = {"topologyPolicy": kubelet.topology_manager_policy}
        if snippet := _kubelet_snippet(kubelet):
            annotations[KUBELET_ANNOTATION] = json.dumps(snippet, sort_keys=True)
        notes += _kubelet_notes(kubelet, cpus)
    net, net_notes = _net(profile, cpus)
    if net is not None:
        spec["net"] = net
    notes += net_notes
    spec["nodeSelector"] = {f"node-role.kubernetes.io/{role}": ""}
    spec["machineConfigPoolSelector"] = {"machineconfiguration.openshift.io/role": role}
    spec["workloadHints"] = {
        # The operator's defaults when workloadHints is absent differ between releases:
        # say every hint.
        "realTime": bool(profile.cpu.isolation),
        "highPowerConsumption": profile.cpu.max_cstate is not None,
        "perPodPowerManagement": False,
    }
    if notes:
        annotations[NOT_EXPRESSED_ANNOTATION] = "; ".join(notes)
    metadata: dict[str, Any] = {"name": role}
    if annotations:
        metadata["annotations"] = annotations
    document = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    return document, tuple(notes)


def export_performance_profile(
    loaded: LoadedProfile, topology: Topology | None = None, pool: str | None = None
) -> Export:
    """``{"<role>.yaml": text}``: the PerformanceProfile as YAML with a header saying what it
    does not express."""
    document, notes = performance_profile(loaded, topology, pool)
    role = document["metadata"]["name"]
    header = [
        f"# PerformanceProfile exported by `quietcore export` from profile {loaded.profile.name}",
        f"# (digest {loaded.digest[:16]}). Not expressible in a PerformanceProfile:",
        *(f"# - {note}" for note in notes or ("nothing",)),
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False)
    return Export({f"{role}.yaml": text}, notes)
