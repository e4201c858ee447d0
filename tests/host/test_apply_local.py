"""apply and rollback against this machine's running kernel, through @local.

Only runtime-safe knobs, each chosen so that changing it cannot cost the machine its
connection or its memory: networking sysctls inside a scratch network namespace (they are
per namespace, so the host's own stay as they are), a few 2 MB hugepages and the THP mode,
and the affinity of one IRQ that nothing here needs (the serial port, ACPI's generic event
device, the memory balloon). Every test puts back what it changed, also when it fails.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from quietcore.converge import journal, paths
from quietcore.converge.plan import apply_reads, plan_apply
from quietcore.converge.run import run_plans
from quietcore.engine import read_hosts
from quietcore.profile.cpuset import format_cpulist, parse_cpulist
from quietcore.profile.load import load_profile
from tests.conftest import run_cli
from tests.host.apply_support import (
    POOL_2M_NODE0,
    PYINFRA,
    ROOT,
    MemoryKnobs,
    Pristine,
    assert_rolled_back,
    host_snapshot,
    memory_knobs_restored,
    pristine_host,
    quietcore,
    read_int,
    thp_mode,
)

pytestmark = pytest.mark.host

MEMORY_KEYS = ("vm/thp_enabled", "hugepages/node0/2048kB")


@pytest.fixture
def pristine(root_only: None, state_dir: Path) -> Iterator[Pristine]:
    with pristine_host() as start:
        yield start


@pytest.fixture
def memory(pristine: Pristine) -> Iterator[MemoryKnobs]:
    with memory_knobs_restored() as saved:
        yield saved


def memory_profile(directory: Path, saved: MemoryKnobs, name: str) -> tuple[Path, str, int]:
    """A profile that changes the THP mode and adds three 2 MB pages on node 0."""
    thp = "never" if saved.thp != "never" else "madvise"
    count = saved.pool_node0 + 3
    path = directory / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        f"memory: {{thp: {thp}}}\n"
        "hugepages:\n"
        f"  pages: [{{size: 2M, count: {count}, node: 0}}]\n"
    )
    return path, thp, count


# --- sysctls, in a scratch network namespace ----------------------------------------------------

# Two candidates per namespaced sysctl: the first one that differs from both the namespace's
# and the host's value is declared, so a change is always visible and never the host's.
SYSCTL_CANDIDATES = {
    "net.ipv4.tcp_rmem": ("8192 65536 8388608", "16384 98304 4194304"),
    "net.ipv4.tcp_fastopen": ("3", "2"),
    "net.core.somaxconn": ("1024", "2048"),
    "net.ipv4.ip_local_port_range": ("20000 40000", "21000 41000"),
}


def sysctl_file(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def canonical(text: str) -> str:
    return " ".join(text.split())


def host_sysctl(name: str) -> str:
    return canonical(Path(sysctl_file(name)).read_text())


def netns_sysctl(netns: str, name: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", sysctl_file(name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return canonical(done.stdout)


def sysctl_profile(path: Path, desired: dict[str, str]) -> None:
    def numbers(name: str) -> str:
        return "[" + ", ".join(desired[name].split()) + "]"

    path.write_text(
        "name: qc-host-netns\n"
        "network:\n"
        f"  tcp: {{rmem: {numbers('net.ipv4.tcp_rmem')}, "
        f"fastopen: {desired['net.ipv4.tcp_fastopen']}}}\n"
        "kernel:\n"
        "  sysctl:\n"
        f"    net.core.somaxconn: {desired['net.core.somaxconn']}\n"
        f"    net.ipv4.ip_local_port_range: {numbers('net.ipv4.ip_local_port_range')}\n"
    )


@pytest.fixture
def netns(root_only: None) -> Iterator[str]:
    name = f"qc-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def test_namespaced_sysctls_apply_and_roll_back_in_a_scratch_netns(
    netns: str, pristine: Pristine, state_dir: Path, tmp_path: Path
) -> None:
    names = list(SYSCTL_CANDIDATES)
    host_before = {name: host_sysctl(name) for name in names}
    ns_before = {name: netns_sysctl(netns, name) for name in names}
    desired = {
        name: next(v for v in options if v not in (host_before[name], ns_before[name]))
        for name, options in SYSCTL_CANDIDATES.items()
    }
    profile = tmp_path / "netns.yaml"
    sysctl_profile(profile, desired)
    keys = [f"sysctl/{name}" for name in names]

    applied = False
    try:
        result = quietcore("apply", "--profile", str(profile), "--yes", "@local", netns=netns)
        applied = Path(paths.SNAPSHOT).exists()
        assert result.returncode == 0, result.output
        for name in names:
            assert netns_sysctl(netns, name) == desired[name], name
            assert host_sysctl(name) == host_before[name], f"{name} changed outside the netns"
        conf = Path("/etc/sysctl.d/zz-quietcore.conf").read_text()
        for name in names:
            assert f"\n{name} = {desired[name]}\n" in conf
        snapshot = host_snapshot()
        assert {key: snapshot.keys[key].before for key in keys} == {
            f"sysctl/{name}": ns_before[name] for name in names
        }

        again = quietcore("plan", "--profile", str(profile), "--json", "@local", netns=netns)
        assert again.returncode == 0, again.output
        [plan] = again.json()["hosts"]
        assert (plan["action_count"], plan["changes"], plan["files"]) == (0, [], [])

        back = quietcore("rollback", "--yes", "@local", netns=netns)
        applied = Path(paths.SNAPSHOT).exists()
        assert back.returncode == 0, back.output
        for name in names:
            assert netns_sysctl(netns, name) == snapshot.keys[f"sysctl/{name}"].before, name
            assert host_sysctl(name) == host_before[name], name
    finally:
        if applied:  # put the namespace back with quietcore's own rollback, in the namespace
            quietcore("rollback", "--yes", "@local", netns=netns)
    assert_rolled_back(pristine, keys, state_dir, profile="qc-host-netns")


# --- hugepages and THP ---------------------------------------------------------------------------


def test_hugepages_and_thp_apply_once_then_nothing_then_roll_back(
    memory: MemoryKnobs, pristine: Pristine, state_dir: Path, tmp_path: Path
) -> None:
    profile, thp, count = memory_profile(tmp_path, memory, "qc-host-memory")

    planned = run_cli("plan", "--profile", str(profile), "--json", "@local")
    assert planned.returncode == 1, planned.stderr  # changes pending
    [plan] = planned.json()["hosts"]
    assert {c["key"]: (c["before"], c["after"], c["how"]) for c in plan["changes"]} == {
        "vm/thp_enabled": (memory.thp, thp, "now"),
        "hugepages/node0/2048kB": (str(memory.pool_node0), str(count), "now"),
    }
    assert {f["path"] for f in plan["files"]} == {
        paths.BOOT_SCRIPT,
        paths.BOOT_UNIT,
        paths.BOOT_WANTS,
    }

    first = run_cli("apply", "--profile", str(profile), "--yes", "--json", "@local")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.json()["changed"] == plan["action_count"] == 5
    assert thp_mode() == thp
    assert read_int(POOL_2M_NODE0) == count
    boot = Path(paths.BOOT_SCRIPT).read_text()
    assert f"qc_write {POOL_2M_NODE0} {count}\n" in boot
    assert f"qc_write /sys/kernel/mm/transparent_hugepage/enabled {thp}\n" in boot
    snapshot = host_snapshot()
    assert {key: snapshot.keys[key].before for key in MEMORY_KEYS} == {
        "vm/thp_enabled": memory.thp,
        "hugepages/node0/2048kB": str(memory.pool_node0),
    }

    second = run_cli("apply", "--profile", str(profile), "--yes", "--json", "@local")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.json()["changed"] == 0
    assert second.json()["hosts"][0]["planned"] == 0

    back = run_cli("rollback", "--yes", "--json", "@local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert back.json()["hosts"][0]["not_restored"] == []
    assert MemoryKnobs.now() == memory
    assert_rolled_back(pristine, MEMORY_KEYS, state_dir, profile="qc-host-memory")


def test_plain_pyinfra_cli_tune_and_rollback_deploys(
    memory: MemoryKnobs, pristine: Pristine, state_dir: Path, tmp_path: Path
) -> None:
    profile, thp, count = memory_profile(tmp_path, memory, "qc-host-pyinfra")

    def pyinfra(deploy: str, *data: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [
                str(PYINFRA),
                str(ROOT / "inventory" / "local.py"),
                str(ROOT / "deploys" / deploy),
                *data,
                "-y",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    pyinfra("tune.py", "--data", f"profile={profile}")
    assert thp_mode() == thp
    assert read_int(POOL_2M_NODE0) == count
    assert Path(paths.BOOT_SCRIPT).is_file()
    # What the deploy did is what quietcore's own apply would have done: nothing is left.
    after = run_cli("plan", "--profile", str(profile), "--json", "@local")
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.json()["hosts"][0]["action_count"] == 0

    pyinfra("rollback.py")
    assert MemoryKnobs.now() == memory
    assert_rolled_back(pristine, MEMORY_KEYS, state_dir, profile="qc-host-pyinfra")


# --- the affinity of one IRQ nothing here needs --------------------------------------------------

# Action names in /proc/interrupts of devices this machine does not need to stay reachable:
# ACPI's generic event device, the memory balloon's queues, the serial port. Never a network
# or block device's queue.
SPARE_IRQ = re.compile(r"^(?:ACPI:Ged|virtio\d+-(?:inflate|deflate|stats)|ttyS\d+)$")


def spare_irqs() -> list[int]:
    found = []
    for line in Path("/proc/interrupts").read_text().splitlines()[1:]:
        number, _, rest = line.strip().partition(":")
        fields = rest.split()
        if number.isdigit() and fields and SPARE_IRQ.fullmatch(fields[-1]):
            found.append(int(number))
    return found


def affinity(irq: int) -> str:
    return format_cpulist(parse_cpulist(Path(f"/proc/irq/{irq}/smp_affinity_list").read_text()))


def all_affinities() -> dict[int, str]:
    return {
        int(path.parent.name): path.read_text().strip()
        for path in Path("/proc/irq").glob("[0-9]*/smp_affinity_list")
    }


def test_affinity_of_one_spare_irq_applies_and_rolls_back(
    pristine: Pristine, state_dir: Path, tmp_path: Path
) -> None:
    candidates = spare_irqs()
    if not candidates:
        pytest.fail(
            "no IRQ this machine can spare (ACPI:Ged, virtio balloon, ttyS*) in /proc/interrupts;"
            " refusing to move the affinity of one it may need"
        )
    irq = candidates[0]
    original = affinity(irq)
    online = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())
    # One CPU the IRQ is not confined to now: the last online one, else the first.
    target = format_cpulist({max(online)} if original != str(max(online)) else {min(online)})
    key = f"irq/{irq}/smp_affinity_list"
    others = {n: cpus for n, cpus in all_affinities().items() if n != irq}

    profile = tmp_path / "irq.yaml"
    profile.write_text(f"name: qc-host-irq\nirq: {{affinity: '{target}'}}\n")
    loaded = load_profile(str(profile))
    try:
        [read] = read_hosts(["@local"], apply_reads(loaded))
        plan = plan_apply(loaded, read, journal.now_utc())
        assert plan.error is None, plan.error
        [change] = [c for c in plan.changes if c.key == key]
        assert (change.kind, change.before, change.after) == ("now", original, target)
        assert plan.snapshot is not None
        # Every IRQ is in the plan; carry out this one's change and nothing else.
        only = replace(
            plan,
            changes=(change,),
            files=(),
            snapshot=replace(plan.snapshot, keys={key: plan.snapshot.keys[key]}, files={}),
        )
        context = journal.Context(
            journal.now_utc(), journal.operator(), "@local", "apply", "qc-host-irq", loaded.digest
        )
        [outcome] = run_plans(["@local"], [only], lambda _: context, reboot=False)
        assert (outcome.ran, outcome.ok, outcome.error) == (True, True, None)
        assert affinity(irq) == target
        assert {n: c for n, c in all_affinities().items() if n != irq} == others
        assert set(host_snapshot().keys) == {key}
        assert host_snapshot().keys[key].before == original

        back = run_cli("rollback", "--yes", "@local")
        assert back.returncode == 0, back.stdout + back.stderr
        assert affinity(irq) == original
    finally:
        Path(f"/proc/irq/{irq}/smp_affinity_list").write_text(f"{original}\n")
    assert_rolled_back(pristine, [key], state_dir, profile="qc-host-irq")
