"""Node checks (k8s/node_checks.py) and the verifier script that evaluates them.

The central proof: on real captured hosts, the verifier, reading the captured files from a
host root, gives every key the verdict ``quietcore verify`` gives it from the same capture.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.bundles import load_readings
from tests.unit import knob_hosts, platform_knob_hosts
from tests.unit.lab_apply_hosts import CAPTURE as LAB_CAPTURE

from quietcore.audit import audit_host
from quietcore.drift import compare
from quietcore.k8s.node_checks import (
    SCHEMA_ID,
    checks_document,
    checks_json,
    node_check,
    node_checks,
)
from quietcore.knobs import cmdline
from quietcore.knobs.base import Setting, Status
from quietcore.knobs.node_check import NodeCheck, Unchecked
from quietcore.profile.cpuset import format_cpulist, format_cpumask, parse_cpulist, parse_cpumask
from quietcore.profile.load import load_profile
from quietcore.readings import HostRead, Readings

SCRIPT = Path(__file__).parents[2] / "src/quietcore/k8s/target/qc_node_verifier.py"


def _verifier() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qc_node_verifier", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


verifier = _verifier()


def _host_root(readings: Readings, root: Path) -> Path:
    """The capture's files laid out under ``root``, as the host's / would be mounted."""
    for path, lines in readings.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"{line}\n" for line in lines))
    return root


def _verdicts(settings: Iterable[Setting], root: Path) -> dict[str, Status]:
    document = json.loads(checks_json(list(settings), profile="p", digest="sha256:0"))
    return {v.key: v.status for v in verifier.evaluate(document, verifier.HostFiles(str(root)))}


def _captured_cases() -> list[tuple[str, list[Setting], dict[str, Status]]]:
    """(capture, settings, key -> verify's status) for every capture with file-state knobs."""
    cases = []
    for name in ("knobs-vm-default", "knobs-vm-tuned"):
        readings = load_readings(name)
        topology = knob_hosts.this_vm()
        ctx = knob_hosts.context(knob_hosts.CAPTURE_PROFILE, topology)
        settings = [s for family in knob_hosts.FAMILIES for s in family.desired(ctx)]
        statuses = {r.setting.key: r.status for r in compare(settings, readings, topology)}
        cases.append((name, settings, statuses))
    for name in ("platform-vm-default", "platform-vm-tuned"):
        readings = load_readings(name)
        topology = platform_knob_hosts.capture_topology(name)
        ctx = knob_hosts.context(platform_knob_hosts.CAPTURE_PROFILE, topology)
        settings = [s for family in platform_knob_hosts.FAMILIES for s in family.desired(ctx)]
        statuses = {r.setting.key: r.status for r in compare(settings, readings, topology)}
        cases.append((name, settings, statuses))
    audit = audit_host(
        load_profile("trading"), HostRead("lab", load_readings(LAB_CAPTURE), None, 0)
    )
    lab = {r.setting.key: r.status for r in audit.results}
    cases.append((LAB_CAPTURE, [r.setting for r in audit.results], lab))
    return cases


CASES = _captured_cases()


@pytest.mark.parametrize(("capture", "settings", "expected"), CASES, ids=[c[0] for c in CASES])
def test_verifier_gives_verifys_verdict_on_captured_hosts(
    capture: str, settings: list[Setting], expected: dict[str, Status], tmp_path: Path
) -> None:
    got = _verdicts(settings, _host_root(load_readings(capture), tmp_path))
    unchecked = {e.key for e in node_checks(settings).unchecked}
    checked = {key: status for key, status in expected.items() if key not in unchecked}
    assert got == checked
    # Not vacuous: the captures hold both sides of the comparison.
    assert {"ok", "drift"} <= set(got.values()) or capture == "platform-vm-default"


def test_captures_cover_every_check_kind_and_verdict() -> None:
    kinds = {check.kind for _, settings, _ in CASES for check in node_checks(settings).checks} | {
        check.fallback.kind
        for _, settings, _ in CASES
        for check in node_checks(settings).checks
        if check.fallback
    }
    assert kinds >= {
        "exact",
        "cpulist",
        "cpulist_subset",
        "cpumask",
        "bracketed",
        "cmdline_arg",
        "meminfo_kib",
        "all_equal",
        "exists",
    }
    statuses = {status for _, _, expected in CASES for status in expected.values()}
    assert statuses >= {"ok", "drift", "missing", "unsupported", "immovable"}


def test_irq_settings_become_one_check_per_file_over_every_irq() -> None:
    audit = audit_host(
        load_profile("trading"), HostRead("lab", load_readings(LAB_CAPTURE), None, 0)
    )
    irq_keys = {r.setting.key for r in audit.results if r.setting.family == "irq"}
    made = node_checks(r.setting for r in audit.results)
    irq_checks = [c for c in made.checks if c.key.startswith("irq/")]
    assert {c.key for c in irq_checks} == {
        "irq/default_smp_affinity",
        "irq/{item}/smp_affinity_list",
        "irq/{item}/effective_affinity_list",
    }
    assert len(irq_keys) > 3
    [allowed] = [c for c in irq_checks if c.key == "irq/{item}/smp_affinity_list"]
    assert allowed.each == "/proc/irq/[0-9]*"
    assert allowed.path == "/proc/irq/{item}/smp_affinity_list"
    assert allowed.owned is not None and "IRQD_AFFINITY_MANAGED" in allowed.owned.flags


def _setting(family: str, key: str, desired: str) -> Setting:
    return Setting(key=key, family=family, desired=desired, field="f")


def test_settings_outside_proc_and_sys_are_unchecked_with_a_reason() -> None:
    for family, key in (
        ("kubelet", "kubelet/cpuManagerPolicy"),
        ("irqbalance", "irqbalance/banned_cpulist"),
        ("systemd", "systemd/CPUAffinity"),
        ("nic", "nic/eth0/coalesce/rx-usecs"),
        ("future", "future/thing"),
    ):
        made = node_check(_setting(family, key, "x"))
        assert isinstance(made, Unchecked), key
        assert made.reason
    steering = node_check(_setting("nic", "nic/eth0/rx-0/rps_cpus", "0"))
    assert isinstance(steering, NodeCheck) and steering.kind == "cpumask"


def test_cmdline_arguments_compare_as_the_family_does() -> None:
    def check(argument: str) -> NodeCheck:
        made = node_check(_setting("cmdline", f"cmdline/{argument.partition('=')[0]}", argument))
        assert isinstance(made, NodeCheck)
        return made

    assert check("isolcpus=domain,2-7").argument == "isolcpus"
    assert check("nohz_full=2-7").argument == "cpulist"
    assert check("default_hugepagesz=1G").argument == "size"
    assert check("skew_tick=1").argument == "text"
    assert check("skew_tick=1").path == cmdline.PROC_CMDLINE


def test_two_desired_values_for_one_node_check_are_refused() -> None:
    settings = [
        _setting("irq", "irq/1/smp_affinity_list", "0"),
        _setting("irq", "irq/2/smp_affinity_list", "1"),
    ]
    with pytest.raises(ValueError, match="one node check cannot say both"):
        node_checks(settings)


def test_document_is_versioned_and_names_the_profile() -> None:
    settings = [
        _setting("sysctl", "sysctl/vm.swappiness", "10"),
        _setting("kubelet", "kubelet/cpuManagerPolicy", "static"),
    ]
    document = json.loads(checks_json(settings, profile="trading", digest="sha256:ab"))
    assert document == checks_document(settings, profile="trading", digest="sha256:ab")
    assert document["schema"] == SCHEMA_ID
    assert document["profile"] == {"name": "trading", "digest": "sha256:ab"}
    assert document["checks"] == [
        {
            "key": "sysctl/vm.swappiness",
            "path": "/proc/sys/vm/swappiness",
            "kind": "exact",
            "desired": "10",
            "absent_reason": "the running kernel has no sysctl vm.swappiness",
        }
    ]
    assert [entry["key"] for entry in document["unchecked"]] == ["kubelet/cpuManagerPolicy"]


# --- The script itself ---------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def _document(*checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "profile": {"name": "p", "digest": "sha256:0"},
        "checks": list(checks),
        "unchecked": [{"key": "kubelet/x", "reason": "r"}],
    }


def test_once_prints_metrics_and_exits_1_on_drift_only(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "proc/sys/vm").mkdir(parents=True)
    (root / "proc/sys/vm/swappiness").write_text("60\n")
    check = {"key": "sysctl/vm.swappiness", "path": "/proc/sys/vm/swappiness"}
    checks = _write(tmp_path / "c.json", _document({**check, "kind": "exact", "desired": "10"}))
    drift = _run("--checks", str(checks), "--host-root", str(root), "--once")
    assert drift.returncode == 1, drift.stderr
    assert 'quietcore_node_setting_drift{key="sysctl/vm.swappiness"} 1' in drift.stdout
    assert 'quietcore_node_checks{status="unchecked"} 1' in drift.stdout
    (root / "proc/sys/vm/swappiness").write_text("10\n")
    ok = _run("--checks", str(checks), "--host-root", str(root), "--once")
    assert ok.returncode == 0, ok.stderr
    assert 'quietcore_node_setting_drift{key="sysctl/vm.swappiness"} 0' in ok.stdout
    assert (root / "proc/sys/vm/swappiness").read_text() == "10\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "other/v1"}, "schema"),
        (
            {"checks": [{"key": "k", "path": "/../etc/shadow", "kind": "exact", "desired": ""}]},
            "..",
        ),
        ({"checks": [{"key": "k", "path": "etc/x", "kind": "exact", "desired": ""}]}, "absolute"),
        ({"checks": [{"key": "k", "path": "/x", "kind": "regex", "desired": ""}]}, "kind"),
        ({"checks": [{"key": "k", "path": "/x", "kind": "exact"}]}, "desired"),
    ],
)
def test_bad_checks_documents_are_refused_naming_the_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    checks = _write(tmp_path / "c.json", {**_document(), **change})
    done = _run("--checks", str(checks), "--host-root", str(tmp_path), "--once")
    assert done.returncode == 2
    assert message in done.stderr
    assert str(checks) in done.stderr


# --- The script's parsers agree with quietcore's ----------------------------------------------

cpu_sets = st.frozensets(st.integers(0, 300), max_size=40)


@given(cpu_sets)
def test_cpulists_and_masks_parse_as_quietcore_parses_them(cpus: frozenset[int]) -> None:
    text = format_cpulist(cpus)
    assert verifier.format_cpulist(cpus) == text
    assert verifier.parse_cpulist(text) == parse_cpulist(text) == cpus
    mask = format_cpumask(cpus, 301)  # the kernel's comma-separated 32-bit groups
    assert verifier.parse_cpumask(mask) == parse_cpumask(mask) == cpus


ARGUMENTS = [
    ("isolcpus=2-7", "isolcpus=domain,2,3,4-7"),
    ("isolcpus=managed_irq,2-7", "isolcpus=domain,2-7"),
    ("nohz_full=2-3", "nohz_full=2,3"),
    ("default_hugepagesz=1G", "default_hugepagesz=1024M"),
    ("default_hugepagesz=1G", "default_hugepagesz=2M"),
    ("skew_tick=1", "skew_tick=0"),
    ("nosoftlockup", "nosoftlockup"),
    ("nohz_full=2-3", "nohz_full=x"),
]


@pytest.mark.parametrize(("desired", "actual"), ARGUMENTS)
def test_kernel_arguments_compare_as_the_cmdline_family_compares(desired: str, actual: str) -> None:
    how = verifier_argument(desired)
    assert verifier.same_argument(desired, actual, how) == cmdline.same_argument(desired, actual)


def verifier_argument(argument: str) -> str:
    made = node_check(_setting("cmdline", f"cmdline/{argument.partition('=')[0]}", argument))
    assert isinstance(made, NodeCheck)
    return made.argument


@given(st.text(alphabet='ab =",-\t', max_size=30))
def test_command_lines_split_as_the_cmdline_family_splits_them(text: str) -> None:
    assert verifier.kernel_arguments(text) == cmdline.kernel_arguments(text)
