"""The built-in profiles are equal in effect to TuneD's profiles of the same names.

TuneD's own ``tuned.conf`` files (``tests/data/tuned``, two snapshots, see its README) are
parsed here: ``include=`` chains are followed, ``${...}`` variables and the few functions the
used options call are evaluated for an explicit test topology, and every sysctl, sysfs write,
kernel argument and plugin option they hold must appear, with the same value, among the
settings quietcore resolves for that topology. The topology is built here because a captured
bundle of this 2-CPU, 1-node VM cannot show the socket/NUMA split TuneD's defaults depend on.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from quietcore.knobs.base import Setting
from quietcore.knobs.cmdline import argument_name, same_argument
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist, parse_cpumask
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import resolve
from quietcore.topology import Cpu, Interface, NumaNode, Topology

TUNED_DATA = Path(__file__).resolve().parents[1] / "data" / "tuned"
BUILTIN = Path(__file__).resolve().parents[2] / "src" / "quietcore" / "builtin_profiles"
# Each snapshot, and the directories its ``include=`` names are looked up in, in order.
SNAPSHOTS: dict[str, tuple[str, ...]] = {"v2.20.0": ("v2.20.0",), "git": ("git", "v2.20.0")}
TUNED_NAMES = ("latency-performance", "network-latency", "cpu-partitioning", "realtime")
BUILTIN_NAMES = (*TUNED_NAMES, "trading", "kernel-bypass")
# What every captured variables file that sets isolated_cores sets it to; TuneD computes it.
ISOLATED_CORES_DEFAULT = "${f:calc_isolated_cores:1}"


# --- The test host: 2 sockets = 2 NUMA nodes, 4 CPUs each, no SMT, one NIC on node 0 -------


def _two_socket_topology() -> Topology:
    cpus = {
        cpu: Cpu(
            id=cpu, core_id=cpu % 4, package_id=cpu // 4, node=cpu // 4, siblings=frozenset({cpu})
        )
        for cpu in range(8)
    }
    nodes = {
        node: NumaNode(
            id=node, cpus=frozenset(range(4 * node, 4 * node + 4)), mem_total_kib=16 << 20
        )
        for node in (0, 1)
    }
    nic = Interface(
        name="ens1f0",
        driver="ice",
        numa_node=0,
        irqs=tuple(range(40, 48)),
        rx_queues=8,
        tx_queues=8,
    )
    return Topology(
        online=frozenset(range(8)),
        possible_count=8,
        cpus=cpus,
        nodes=nodes,
        hugepage_sizes_kib=(2048, 1048576),
        interfaces={"ens1f0": nic},
        irqs=(0, 1, 4, 8, 9, 12, 14, *range(40, 48)),
        model="Intel(R) Xeon(R) Gold 6354 CPU @ 3.00GHz",
        flags=frozenset({"fpu", "tsc", "mce", "mca", "constant_tsc", "pdpe1gb"}),
        hypervisor=None,
        kernel_release="6.18.0",
        present=frozenset(range(8)),
        cpu_vendor="GenuineIntel",
    )


TOPOLOGY = _two_socket_topology()


# --- TuneD's side: profile files, includes, variables -----------------------------------------

Sections = dict[str, dict[str, str]]


def read_ini(path: Path, section: str | None = None) -> Sections:
    """A TuneD INI file as {section: {option: raw value}}; ``section`` names the implicit
    section of a variables file, which has no header."""
    parser = configparser.ConfigParser(
        interpolation=None, delimiters=("=",), comment_prefixes=("#",), strict=True
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # sysctl names, paths
    text = path.read_text()
    parser.read_string(text if section is None else f"[{section}]\n{text}")
    return {name: dict(parser[name]) for name in parser.sections()}


def profile_dir(snapshot: str, name: str) -> Path:
    for directory in SNAPSHOTS[snapshot]:
        candidate = TUNED_DATA / directory / name
        if (candidate / "tuned.conf").exists():
            return candidate
    raise FileNotFoundError(f"no TuneD profile {name} in snapshot {snapshot}")


def merged_sections(snapshot: str, name: str) -> Sections:
    """The profile with its ``include=`` chain applied: a child's options override its
    parent's options of the same name, section by section, as TuneD merges them."""
    own = read_ini(profile_dir(snapshot, name) / "tuned.conf")
    parent = own.get("main", {}).get("include")
    merged = merged_sections(snapshot, parent) if parent else {}
    for section, options in own.items():
        merged.setdefault(section, {}).update(options)
    return merged


def calc_isolated_cores(topology: Topology, reserve: int) -> CpuSet:
    """TuneD's ``calc_isolated_cores``: all but the first ``reserve`` CPUs of each socket."""
    by_socket: dict[int, list[int]] = {}
    for cpu in sorted(topology.cpus.values(), key=lambda c: c.id):
        by_socket.setdefault(cpu.package_id, []).append(cpu.id)
    return frozenset(cpu for cpus in by_socket.values() for cpu in cpus[reserve:])


def tuned_cpulist(cpus: CpuSet) -> str:
    """TuneD's expanded CPU lists: every CPU, comma-separated."""
    return ",".join(str(cpu) for cpu in sorted(cpus))


def tuned_cpumask(cpus: CpuSet) -> str:
    """TuneD's ``cpulist2hex``: hex, zero-padded to 8-digit groups joined by commas."""
    digits = f"{sum(1 << cpu for cpu in cpus):x}"
    digits = digits.zfill(-(-len(digits) // 8) * 8)
    return ",".join(digits[i : i + 8] for i in range(0, len(digits), 8))


@dataclass(frozen=True)
class TunedContext:
    """A TuneD profile evaluated on one topology."""

    topology: Topology
    sections: Sections
    variables: dict[str, str]
    housekeeping: CpuSet


def tuned_context(snapshot: str, name: str, topology: Topology) -> TunedContext:
    sections = merged_sections(snapshot, name)
    declared: dict[str, str] = {}
    variables_file = profile_dir(snapshot, name) / f"{name}-variables.conf"
    if variables_file.exists():
        declared = read_ini(variables_file, "variables")["variables"]
    assert declared.pop("isolated_cores", ISOLATED_CORES_DEFAULT) == ISOLATED_CORES_DEFAULT
    isolated = calc_isolated_cores(topology, 1)
    housekeeping = topology.online - isolated
    variables = {
        "isolated_cores": tuned_cpulist(isolated),
        "not_isolated_cores_expanded": tuned_cpulist(housekeeping),
        "not_isolated_cpumask": tuned_cpumask(housekeeping),
        "no_balance_cores": "",  # optional, unset in every captured variables file
        "netdev_queue_count": "",  # optional, unset in every captured variables file
        **declared,
    }
    return TunedContext(topology, sections, variables, housekeeping)


_INNERMOST = re.compile(r"\$\{((?:[^{}$]|\$(?!\{))*)\}")
_ARGUMENT_SEPARATOR = re.compile(r"(?<!\\):")


def expand(ctx: TunedContext, text: str, seen: frozenset[str] = frozenset()) -> str:
    """``${variable}`` and ``${f:function:args}`` evaluated innermost first, as TuneD does.

    Variables come from ``ctx.variables`` first, then from the profile's ``[variables]``
    definitions; only the functions the used options call are known, any other is an error.
    """
    functions: dict[str, Callable[[list[str]], str]] = {
        "regex_search_ternary": lambda a: a[2] if re.search(a[1], a[0]) else a[3],
        # TuneD's check_net_queue_count: the given count, else the housekeeping CPU count.
        "check_net_queue_count": lambda a: a[0] if a[0].isdigit() else str(len(ctx.housekeeping)),
    }
    while match := _INNERMOST.search(text):
        body = match.group(1)
        if body.startswith("f:"):
            function, *arguments = _ARGUMENT_SEPARATOR.split(body[2:])
            value = functions[function](arguments)
        elif body in ctx.variables:
            value = ctx.variables[body]
        else:
            assert body not in seen, f"variable {body} is defined by itself"
            value = expand(ctx, ctx.sections["variables"][body], seen | {body})
        text = text[: match.start()] + value + text[match.end() :]
    return text


# --- TuneD items and what quietcore must have for each ---------------------------------------


@dataclass(frozen=True)
class Expectation:
    """One TuneD item and the quietcore setting that must carry it."""

    item: str  # e.g. "[sysctl] vm.swappiness=10", for the failure message
    key: str
    check: Callable[[str], bool]  # applied to the setting's desired value


def _equal(expected: str) -> Callable[[str], bool]:
    return lambda desired: " ".join(desired.split()) == " ".join(expected.split())


def _cpus_equal(expected: CpuSet) -> Callable[[str], bool]:
    return lambda desired: parse_cpulist(desired) == expected


def _argument_equal(expected: str) -> Callable[[str], bool]:
    return lambda desired: same_argument(desired, expected)


def _per_cpu(
    ctx: TunedContext, item: str, name: str, check: Callable[[str], bool]
) -> Iterator[Expectation]:
    for cpu in sorted(ctx.topology.online):
        yield Expectation(item, f"cpu/{cpu}/{name}", check)


# TuneD items quietcore deliberately does not reproduce; docs/builtin-profiles.md says why
# (test_docs_explain_what_is_not_reproduced keeps the two in step).
NOT_REPRODUCED = {
    "rtentsk": "holding a timestamping socket open needs a resident daemon",
    "ps_blacklist": "quietcore does not migrate running threads",
    "tuned.non_isolcpus": "read only by TuneD's initrd hook; systemd CPUAffinity covers it",
}
# Options that configure a TuneD plugin itself rather than name kernel state.
TUNED_INTERNAL = frozenset({"priority", "initrd_remove_dir", "initrd_dst_img", "initrd_add_dir"})
# Sections that configure TuneD or run a script instead of writing kernel state; the scripts'
# effects (KSM off, KVM options) are covered by test_newest_tuned_items and the docs.
NOT_KERNEL_STATE = frozenset({"main", "variables", "script"})

# plugin_cpu's _energy_perf_policy_to_human_v2, read backwards: EPB names -> numbers.
TUNED_EPB = {"performance": "0", "balance-performance": "4", "normal": "6", "powersave": "15"}
# force_latency alternatives that name a C-state by id (a bare number is a latency in us).
_CSTATE_ID = re.compile(r"^cstate\.id(?:_no_zero)?:(\d+)$")

# TuneD sysfs paths -> quietcore keys that write the same value.
SYSFS_KEYS: dict[str, Callable[[Topology], list[str]]] = {
    "/sys/devices/virtual/workqueue/cpumask": lambda _: ["workqueue/cpumask"],
    # Every unbound workqueue's effective mask is its own mask AND this global one, so
    # restricting the global mask restricts each of them too.
    "/sys/devices/virtual/workqueue/*/cpumask": lambda _: ["workqueue/cpumask"],
    "/sys/bus/workqueue/devices/writeback/cpumask": lambda _: ["workqueue/writeback_cpumask"],
    "/sys/devices/system/machinecheck/machinecheck*/ignore_ce": lambda t: [
        f"machinecheck/machinecheck{cpu}/ignore_ce" for cpu in sorted(t.online)
    ],
}


def _sysctl(ctx: TunedContext, name: str, value: str) -> Iterator[Expectation]:
    yield Expectation(f"[sysctl] {name}={value}", f"sysctl/{name}", _equal(expand(ctx, value)))


def _vm(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    keys = {"transparent_hugepages": "vm/thp_enabled"}
    yield Expectation(f"[vm] {option}={value}", keys[option], _equal(value))


def _cpu(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    item = f"[cpu] {option}={value}"
    if option == "governor":
        yield from _per_cpu(ctx, item, "scaling_governor", _equal(value))
    elif option == "energy_perf_bias":
        yield from _per_cpu(ctx, item, "energy_perf_bias", _equal(TUNED_EPB[value]))
    elif option == "min_perf_pct":
        yield Expectation(item, "cpu/intel_pstate/min_perf_pct", _equal(value))
    elif option == "boost":
        yield Expectation(item, "cpu/boost", _equal(value))
    elif option == "force_latency":
        # PM QoS at C-state N's exit latency lets exactly states 0..N be entered.
        match = _CSTATE_ID.match(value.partition("|")[0])
        assert match, f"{item}: not a C-state id"
        deepest = int(match.group(1))
        yield from _per_cpu(ctx, item, f"cpuidle/deeper_than_state{deepest}/disable", _equal("1"))
        for state in range(deepest + 1):
            yield from _per_cpu(ctx, item, f"cpuidle/state{state}/disable", _equal("0"))
    else:
        raise AssertionError(f"no quietcore mapping for {item}")


def _bootloader(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    assert option.startswith("cmdline"), f"no quietcore mapping for [bootloader] {option}"
    for argument in expand(ctx, value).removeprefix("+").split():
        name = argument_name(argument)
        if name not in NOT_REPRODUCED:
            yield Expectation(
                f"[bootloader] {argument}", f"cmdline/{name}", _argument_equal(argument)
            )


def _sysfs(ctx: TunedContext, path: str, value: str) -> Iterator[Expectation]:
    text = expand(ctx, value)
    check = _cpus_equal(parse_cpumask(text)) if path.endswith("/cpumask") else _equal(text)
    for key in SYSFS_KEYS[path](ctx.topology):
        yield Expectation(f"[sysfs] {path}={text}", key, check)


def _systemd(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    assert option == "cpu_affinity", f"no quietcore mapping for [systemd] {option}"
    text = expand(ctx, value)
    yield Expectation(
        f"[systemd] {option}={text}", "systemd/CPUAffinity", _cpus_equal(parse_cpulist(text))
    )


def _irqbalance(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    assert option == "banned_cpus", f"no quietcore mapping for [irqbalance] {option}"
    text = expand(ctx, value)
    yield Expectation(
        f"[irqbalance] {option}={text}",
        "irqbalance/banned_cpulist",
        _cpus_equal(parse_cpulist(text)),
    )


def _scheduler(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    assert option == "isolated_cores", f"no quietcore mapping for [scheduler] {option}"
    # The scheduler plugin moves every IRQ off the isolated CPUs and writes the rest to
    # /proc/irq/default_smp_affinity.
    text = expand(ctx, value)
    housekeeping = ctx.topology.online - parse_cpulist(text)
    item = f"[scheduler] {option}={text}"
    keys = [
        "irq/default_smp_affinity",
        *(f"irq/{irq}/smp_affinity_list" for irq in ctx.topology.irqs),
    ]
    for key in keys:
        yield Expectation(item, key, _cpus_equal(housekeeping))


def _net(ctx: TunedContext, option: str, value: str) -> Iterator[Expectation]:
    assert option == "channels", f"no quietcore mapping for [net] {option}"
    text = expand(ctx, value)
    kind, count = text.split()
    assert kind == "combined", f"[net] {option}={text}: only combined channels are mapped"
    # The net plugin tunes every NIC backed by a hardware device.
    for nic in ctx.topology.interfaces.values():
        if nic.driver is not None:
            key = f"nic/{nic.name}/channels/combined"
            yield Expectation(f"[net] {option}={text}", key, _equal(count))


SECTIONS: dict[str, Callable[[TunedContext, str, str], Iterator[Expectation]]] = {
    "sysctl": _sysctl,
    "vm": _vm,
    "cpu": _cpu,
    "bootloader": _bootloader,
    "sysfs": _sysfs,
    "systemd": _systemd,
    "irqbalance": _irqbalance,
    "scheduler": _scheduler,
    "net": _net,
}


def tuned_expectations(ctx: TunedContext) -> list[Expectation]:
    """Every kernel-state item of the TuneD profile as a quietcore expectation; a section or
    option with no mapping fails the test, so a new TuneD item cannot slip through."""
    expectations: list[Expectation] = []
    for section, options in ctx.sections.items():
        if section in NOT_KERNEL_STATE or section in NOT_REPRODUCED:
            continue
        assert section in SECTIONS, f"no quietcore mapping for TuneD section [{section}]"
        for option, value in options.items():
            if option not in TUNED_INTERNAL and option not in NOT_REPRODUCED:
                expectations += SECTIONS[section](ctx, option, value)
    return expectations


# --- quietcore's side ----------------------------------------------------------------------


def desired_settings(name: str, topology: Topology) -> dict[str, Setting]:
    settings = resolve(load_profile(name), topology)
    return {setting.key: setting for setting in settings}


def unmet(expectations: list[Expectation], settings: Mapping[str, Setting]) -> list[str]:
    problems = []
    for expectation in expectations:
        setting = settings.get(expectation.key)
        if setting is None:
            problems.append(f"{expectation.item}: no setting {expectation.key}")
        elif not expectation.check(setting.desired):
            problems.append(f"{expectation.item}: {expectation.key} is {setting.desired!r}")
    return problems


# --- Tests ---------------------------------------------------------------------------------


# (snapshot, profile) for every profile file a snapshot holds itself.
CAPTURED = [
    (snapshot, name)
    for snapshot, directories in SNAPSHOTS.items()
    for name in TUNED_NAMES
    if (TUNED_DATA / directories[0] / name / "tuned.conf").exists()
]


@pytest.mark.parametrize(("snapshot", "name"), CAPTURED)
def test_every_tuned_item_is_in_the_quietcore_profile(snapshot: str, name: str) -> None:
    ctx = tuned_context(snapshot, name, TOPOLOGY)
    expectations = tuned_expectations(ctx)
    assert expectations, "parsing found no TuneD items at all"
    assert unmet(expectations, desired_settings(name, TOPOLOGY)) == []


def _leaf_lines(node: yaml.Node, top: bool = True) -> Iterator[int]:
    """0-based lines of every value-carrying entry: a key with a scalar or flow-style value,
    or a list item that is one. Block collections are walked into."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style:
        for key, value in node.value:
            if top and key.value in ("name", "summary", "extends"):
                continue  # identity, not settings
            if isinstance(value, yaml.ScalarNode) or value.flow_style:
                yield key.start_mark.line
            else:
                yield from _leaf_lines(value, top=False)
    elif isinstance(node, yaml.SequenceNode) and not node.flow_style:
        for item in node.value:
            if isinstance(item, yaml.ScalarNode) or item.flow_style:
                yield item.start_mark.line
            else:
                yield from _leaf_lines(item, top=False)


def _commented(lines: list[str], index: int) -> bool:
    """A setting is commented on its own line, or by the comment block that opens the run of
    setting lines it belongs to (no blank line in between)."""
    if " # " in lines[index]:
        return True
    for line in reversed(lines[:index]):
        text = line.strip()
        if text.startswith("#"):
            return True
        if not text:
            return False
    return False


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_setting_says_what_it_does_and_costs(name: str) -> None:
    path = BUILTIN / f"{name}.yaml"
    lines = path.read_text().splitlines()
    root = yaml.compose(path.read_text())
    assert root is not None
    leaves = list(_leaf_lines(root))
    assert leaves, "no settings found"
    uncommented = [
        f"{path.name}:{i + 1}: {lines[i].strip()}" for i in leaves if not _commented(lines, i)
    ]
    assert uncommented == []


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_profile_names_itself_and_its_parent(name: str) -> None:
    raw = yaml.safe_load((BUILTIN / f"{name}.yaml").read_text())
    assert {"name", "summary", "extends"} <= set(raw)
    assert raw["name"] == name
    assert raw["summary"].strip()
    loaded = load_profile(name)
    assert loaded.profile.name == name
    assert len(loaded.files) == len({*loaded.files})


# Items of the newest TuneD (shared/reference/anchors.md, tuned PR #747) that no capture in
# tests/data/tuned holds: profile -> (item, key, check). They apply to every built-in
# profile that extends that profile too.
NEWEST_TUNED: dict[str, list[Expectation]] = {
    "latency-performance": [Expectation("[cpu] boost=1", "cpu/boost", _equal("1"))],
    "network-latency": [
        Expectation(
            f"[bootloader] {argument}",
            f"cmdline/{argument_name(argument)}",
            _argument_equal(argument),
        )
        for argument in (
            "rcupdate.rcu_normal_after_boot=1",
            "rcutree.nohz_full_patience_delay=1000",
        )
    ],
    "cpu-partitioning": [Expectation("script.sh disable_ksm", "vm/ksm_run", _equal("0"))],
}


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_newest_tuned_items(name: str) -> None:
    chain = [Path(file.removeprefix("builtin:")).stem for file in load_profile(name).files]
    expectations = [item for ancestor in chain for item in NEWEST_TUNED.get(ancestor, [])]
    assert expectations, f"{name} extends none of {sorted(NEWEST_TUNED)}"
    assert unmet(expectations, desired_settings(name, TOPOLOGY)) == []


def test_trading_is_aggressive() -> None:
    reserved = frozenset(min(node.cpus) for node in TOPOLOGY.nodes.values())
    isolated = TOPOLOGY.online - reserved
    cpus = format_cpulist(isolated)
    checks: dict[str, Callable[[str], bool]] = {
        "cmdline/isolcpus": _argument_equal(f"isolcpus=managed_irq,domain,{cpus}"),
        "cmdline/nohz_full": _argument_equal(f"nohz_full={cpus}"),
        "cmdline/rcu_nocbs": _argument_equal(f"rcu_nocbs={cpus}"),
        "cmdline/default_hugepagesz": _argument_equal("default_hugepagesz=1G"),
        "hugepages/node0/1048576kB": lambda count: int(count) > 0,
        "sysctl/net.core.busy_poll": lambda us: int(us) > 0,
        "sysctl/net.core.busy_read": lambda us: int(us) > 0,
        "sysctl/net.ipv4.tcp_rmem": lambda triple: int(triple.split()[2]) >= 16 << 20,
        "sysctl/net.ipv4.tcp_wmem": lambda triple: int(triple.split()[2]) >= 16 << 20,
        "sysctl/kernel.numa_balancing": _equal("0"),
        "vm/thp_enabled": _equal("never"),
        "irq/default_smp_affinity": _cpus_equal(reserved),
        **{f"irq/{irq}/smp_affinity_list": _cpus_equal(reserved) for irq in TOPOLOGY.irqs},
        "irqbalance/banned_cpulist": _cpus_equal(isolated),
        "workqueue/cpumask": _cpus_equal(reserved),
        "systemd/CPUAffinity": _cpus_equal(reserved),
        "kubelet/cpuManagerPolicy": _equal("static"),
        "kubelet/topologyManagerPolicy": _equal("single-numa-node"),
        "kubelet/memoryManagerPolicy": _equal("Static"),
        "kubelet/reservedSystemCPUs": _cpus_equal(reserved),
    }
    expectations = [Expectation("trading", key, check) for key, check in checks.items()]
    assert unmet(expectations, desired_settings("trading", TOPOLOGY)) == []
    jitter = load_profile("trading").profile.verify.jitter
    assert jitter is not None
    assert jitter.cpus == "isolated"


def test_docs_explain_what_is_not_reproduced() -> None:
    docs = (BUILTIN.parents[2] / "docs" / "builtin-profiles.md").read_text()
    assert [item for item in NOT_REPRODUCED if item not in docs] == []
