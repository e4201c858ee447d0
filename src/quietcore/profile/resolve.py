"""Make a profile concrete for one host: CPU sets from its topology, then every setting.

Pure: a ``Profile`` and a ``Topology`` in, a ``CpuPlan`` and ``list[Setting]`` out. Whatever the
host cannot satisfy (a CPU it does not have, no housekeeping CPU left, more hugepages than a
node's memory) raises ``ResolveError`` naming the profile field, before any family or
operation sees the profile; ``refuse`` turns it into a ``ProfileError`` with file and line.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence

from pydantic import BaseModel

from quietcore.knobs.base import KnobFamily, ResolveContext, Setting
from quietcore.knobs.registry import FAMILIES
from quietcore.profile.cpuplan import CpuPlan, plan_cpus, resolve_cpu_text
from quietcore.profile.errors import ProfileError, ProfileProblem, ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import CpuSection, CpuText, HugepagesSection, Profile, size_kib
from quietcore.topology import Topology


def refuse(loaded: LoadedProfile, error: ResolveError) -> ProfileError:
    file, line = loaded.locate(error.field)
    return ProfileError([ProfileProblem(file, line, error.field, error.message)])


def _is_cpu_text(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields[name]
    return CpuText in typing.get_args(info.annotation) or any(
        check in info.metadata for check in typing.get_args(CpuText)[1:]
    )


def cpu_texts(model: BaseModel, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, value) of every CPU-set field outside the ``cpu`` section itself."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        field = f"{path}{name}"
        if isinstance(value, CpuSection):
            continue  # plan_cpus owns it
        if isinstance(value, str) and _is_cpu_text(type(model), name):
            yield field, value
        elif isinstance(value, BaseModel):
            yield from cpu_texts(value, f"{field}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from cpu_texts(item, f"{field}.{index}.")


def _check_cpu_texts(profile: Profile, cpus: CpuPlan) -> None:
    for field, spec in cpu_texts(profile):
        try:
            resolve_cpu_text(spec, cpus)
        except ResolveError as error:
            raise ResolveError(field, error.message) from None


# --- Hugepages --------------------------------------------------------------------------------


def _gib(kib: int) -> str:
    return f"{kib / 1024 / 1024:.1f} GiB"


def _check_hugepages(section: HugepagesSection, topology: Topology) -> None:
    supported = ", ".join(f"{kib}kB" for kib in topology.hugepage_sizes_kib) or "none"
    if section.default_size and size_kib(section.default_size) not in topology.hugepage_sizes_kib:
        raise ResolveError(
            "hugepages.default_size",
            f"this host does not offer {section.default_size} hugepages (it offers {supported})",
        )
    host_kib = sum(node.mem_total_kib for node in topology.nodes.values())
    used_kib: dict[int | None, int] = {}  # by node; None is the whole host
    for index, pool in enumerate(section.pages):
        field = f"hugepages.pages.{index}"
        if size_kib(pool.size) not in topology.hugepage_sizes_kib:
            raise ResolveError(
                f"{field}.size",
                f"this host does not offer {pool.size} hugepages (it offers {supported})",
            )
        if pool.node is not None and pool.node not in topology.nodes:
            nodes = ", ".join(str(node) for node in sorted(topology.nodes))
            raise ResolveError(
                f"{field}.node", f"this host has no NUMA node {pool.node} (its nodes: {nodes})"
            )
        kib = size_kib(pool.size) * pool.pages
        scopes: list[tuple[int | None, int, str]] = [(None, host_kib, "the host")]
        if pool.node is not None:
            node_kib = topology.nodes[pool.node].mem_total_kib
            scopes.insert(0, (pool.node, node_kib, f"node {pool.node}"))
        for scope, limit_kib, where in scopes:
            used_kib[scope] = used_kib.get(scope, 0) + kib
            if used_kib[scope] > limit_kib:
                raise ResolveError(
                    f"{field}.count",
                    f"{_gib(used_kib[scope])} of hugepages exceed the {_gib(limit_kib)} of "
                    f"memory of {where}",
                )


# --- Settings ---------------------------------------------------------------------------------


def _refuse_duplicates(settings: list[Setting]) -> None:
    first: dict[str, Setting] = {}
    for setting in settings:
        earlier = first.setdefault(setting.key, setting)
        if earlier is not setting:
            raise ResolveError(
                setting.field,
                f"sets {setting.key} to {setting.desired!r}, but {earlier.field} already sets "
                f"it to {earlier.desired!r}",
            )


def resolve(
    loaded: LoadedProfile, topology: Topology, families: Sequence[KnobFamily] = FAMILIES
) -> list[Setting]:
    """Every setting the profile asks for on this host, host-level impossibilities refused.
    ``families`` defaults to the registry."""
    profile = loaded.profile
    cpus = plan_cpus(profile, topology)
    _check_cpu_texts(profile, cpus)
    _check_hugepages(profile.hugepages, topology)
    ctx = ResolveContext(profile, topology, cpus, loaded.source_of)
    settings = [setting for family in families for setting in family.desired(ctx)]
    _refuse_duplicates(settings)
    return settings
