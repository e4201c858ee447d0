"""The units family (numa.services, containers.slices) on real captures: the 4-CPU, 2-node lab
VM (systemd 252, cgroup v2) before apply, right after apply (no restart), after the service's
restart, and this Firecracker VM whose PID 1 is not systemd. See tests/data/units/README.md."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from quietcore.audit import audit_host
from quietcore.knobs.units import (
    UnitsKnob,
    canonical,
    command_name,
    drop_in_path,
    kernel_policy,
    parse_state,
    render_drop_in,
    state_shell,
)
from quietcore.profile.errors import ProfileError
from quietcore.profile.load import load_profile
from quietcore.profile.loaded import LoadedProfile
from quietcore.readings import SAFE_NAME, HostRead, Readings, parse_bundle_output
from quietcore.steps import UnsafeStepError

DATA = Path(__file__).resolve().parents[1] / "data" / "units"
PROFILE = DATA / "units-lab.yaml"
FEED = "qc-lab-feed.service"
KNOB = UnitsKnob()


@cache
def capture(name: str) -> Readings:
    return parse_bundle_output((DATA / f"{name}.txt").read_text().splitlines())


def results(name: str, loaded: LoadedProfile | None = None) -> dict[str, tuple[str, str | None]]:
    audit = audit_host(loaded or load_profile(str(PROFILE)), HostRead("h", capture(name), None, 0))
    assert audit.error is None, audit.error
    return {
        r.setting.key: (r.status, r.actual) for r in audit.results if r.setting.family == "units"
    }


def reasons(name: str) -> dict[str, str]:
    audit = audit_host(load_profile(str(PROFILE)), HostRead("h", capture(name), None, 0))
    return {r.setting.key: r.reason for r in audit.results if r.setting.family == "units"}


def write_profile(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ncpu:\n  reserved: '0-1'\n  isolated: rest\n" + text)
    return str(path)


# --- Resolving ---------------------------------------------------------------------------------


def test_the_lab_profile_resolves_to_systemd_values() -> None:
    desired = {key: status for key, status in results("lab-before").items()}
    audit = audit_host(load_profile(str(PROFILE)), HostRead("h", capture("lab-before"), None, 0))
    values = {r.setting.key: r.setting.desired for r in audit.results}
    assert values[f"units/{FEED}/AllowedCPUs"] == "2-3"  # isolated
    assert values[f"units/{FEED}/AllowedMemoryNodes"] == "1"  # local: node of CPUs 2-3
    assert values[f"units/{FEED}/NUMAMask"] == "1"
    assert values[f"units/{FEED}/MemoryMax"] == "268435456"
    assert values[f"units/{FEED}/LimitMEMLOCK"] == "infinity"
    assert values[f"units/{FEED}/process/numa_policy"] == "bind:1"
    assert values["units/machine.slice/AllowedCPUs"] == "3"  # isolated[1]
    # A slice has no process: no NUMA policy, no memlock, no process effect.
    assert not [key for key in desired if key.startswith("units/machine.slice/process")]
    assert len(desired) == 21


def test_preferred_is_a_preference_not_a_hard_node_limit(tmp_path: Path) -> None:
    loaded = load_profile(
        write_profile(
            tmp_path,
            "numa:\n  services:\n    - {unit: a.service, cpus: '2', mem_nodes: local,"
            " numa_policy: preferred}\n",
        )
    )
    keys = {key: value for key, (_, value) in results("lab-before", loaded).items()}
    assert "units/a.service/AllowedMemoryNodes" not in keys
    audit = audit_host(loaded, HostRead("h", capture("lab-before"), None, 0))
    desired = {r.setting.key: r.setting.desired for r in audit.results}
    assert desired["units/a.service/NUMAMask"] == "1"
    assert desired["units/a.service/process/numa_policy"] == "prefer:1"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (  # the lab's node 1 has CPUs 2-3; local of 1-2 spans both nodes
            "numa:\n  services:\n    - {unit: a.service, cpus: '1-2', mem_nodes: local,"
            " numa_policy: preferred}\n",
            "numa.services.0.mem_nodes",
            "preferred takes one node",
        ),
        (
            "numa:\n  services:\n    - {unit: a.service, mem_nodes: '5'}\n",
            "numa.services.0.mem_nodes",
            "no NUMA node 5",
        ),
        (
            "containers:\n  slices:\n    - {unit: machine.slice, cpus: '7'}\n",
            "containers.slices.0.cpus",
            "CPU 7 not online",
        ),
        (  # runtime isolation owns the isolated CPUs: no unit can have them
            "numa:\n  services:\n    - {unit: a.service, cpus: 'isolated[0]'}\n",
            "numa.services.0.cpus",
            "belongs to the cpuset partition",
        ),
        (
            "containers:\n  slices:\n    - {unit: system.slice, cpus: reserved}\n",
            "containers.slices.0.unit",
            "already confines system.slice",
        ),
    ],
)
def test_what_the_host_cannot_satisfy_is_refused_with_the_field(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    if "partition" in message or "confines" in message:
        text = "  isolation: [cpuset]\n" + text
    loaded = load_profile(write_profile(tmp_path, text))
    audit = audit_host(loaded, HostRead("h", capture("lab-before"), None, 0))
    assert audit.status == "refused"
    assert f": {field}: " in (audit.error or "") and message in (audit.error or ""), audit.error


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("numa:\n  services:\n    - unit: ../x.service\n      cpus: '2'\n", 7, "unit", "not a"),
        ("numa:\n  services:\n    - unit: a@.service\n      cpus: '2'\n", 7, "unit", "not a"),
        ("containers:\n  slices:\n    - unit: -.slice\n      cpus: '2'\n", 7, "unit", "slice"),
        ("containers:\n  slices:\n    - unit: a.service\n      cpus: '2'\n", 7, "unit", "slice"),
        ("numa:\n  services:\n    - unit: a.service\n      mem_nodes: local\n", 7, "", "cpus"),
        ("numa:\n  services:\n    - unit: a.service\n      numa_policy: bind\n", 7, "", "needs"),
        ("numa:\n  services:\n    - unit: a.service\n      memory_max: 8GB\n", 8, "memory_max", ""),
        ("numa:\n  services:\n    - unit: a.service\n      cpu_weight: 0\n", 8, "cpu_weight", ""),
        ("numa:\n  services:\n    - unit: a.service\n", 7, "", "declares nothing"),
        (
            "containers:\n  workloads:\n    - {name: w, cpus: '2', memory: infinity}\n",
            7,
            "memory",
            "",
        ),
    ],
)
def test_schema_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    path = write_profile(tmp_path, text)
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    [problem] = raised.value.problems
    assert problem.file.endswith("p.yaml") and problem.line == line, problem
    assert problem.field.split(".")[-1] == field or (not field and problem.field[-1].isdigit())
    assert message in problem.message, problem


def test_a_unit_listed_twice_is_refused(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        "numa:\n  services:\n    - {unit: a.service, cpus: '2'}\n"
        "    - {unit: a.service, cpu_weight: 5}\n",
    )
    with pytest.raises(ProfileError, match=r"service a\.service is listed twice"):
        load_profile(path)


# --- Observing the captures ----------------------------------------------------------------------


def test_before_apply_nothing_is_set_and_the_inactive_slice_has_no_cgroup() -> None:
    seen = results("lab-before")
    assert seen[f"units/{FEED}/AllowedCPUs"] == ("drift", "")
    assert seen[f"units/{FEED}/MemoryMax"] == ("drift", "infinity")
    assert seen[f"units/{FEED}/LimitMEMLOCK"] == ("drift", "8388608")
    assert seen[f"units/{FEED}/cgroup/memory.max"] == ("drift", "infinity")  # "max"
    assert seen[f"units/{FEED}/cgroup/cpu.weight"] == ("drift", None)  # no cpu controller
    assert seen[f"units/{FEED}/process/numa_policy"] == ("drift", "default")
    assert seen["units/machine.slice/cgroup/cpuset.cpus.effective"] == ("unsupported", None)
    assert "inactive" in reasons("lab-before")["units/machine.slice/cgroup/cpu.weight"]


def test_after_apply_the_cgroup_follows_and_the_process_waits_for_a_restart() -> None:
    seen = results("lab-applied")
    drift = {key: actual for key, (status, actual) in seen.items() if status != "ok"}
    assert drift == {
        f"units/{FEED}/process/numa_policy": "default",
        f"units/{FEED}/process/memlock": "8388608",
        # machine.slice was still inactive when captured
        "units/machine.slice/cgroup/cpuset.cpus.effective": None,
        "units/machine.slice/cgroup/cpuset.mems.effective": None,
        "units/machine.slice/cgroup/memory.max": None,
        "units/machine.slice/cgroup/cpu.weight": None,
    }
    assert seen[f"units/{FEED}/cgroup/cpuset.cpus.effective"] == ("ok", "2-3")
    why = reasons("lab-applied")[f"units/{FEED}/process/numa_policy"]
    assert why.startswith("PID 636 started with this") and "next starts" in why


def test_after_the_restart_every_setting_is_ok() -> None:
    assert {status for status, _ in results("lab-restarted").values()} == {"ok"}


def test_without_systemd_every_key_is_unsupported() -> None:
    seen = results("firecracker-no-systemd", load_profile(str(DATA / "units-1node.yaml")))
    assert seen and {status for status, _ in seen.values()} == {"unsupported"}
    assert set(reasons_for("firecracker-no-systemd").values()) == {
        "PID 1 is process_api, not systemd: no units"
    }


def reasons_for(name: str) -> dict[str, str]:
    loaded = load_profile(str(DATA / "units-1node.yaml"))
    audit = audit_host(loaded, HostRead("h", capture(name), None, 0))
    return {r.setting.key: r.reason for r in audit.results if r.setting.family == "units"}


def test_memory_max_is_compared_page_rounded() -> None:
    audit = audit_host(load_profile(str(PROFILE)), HostRead("h", capture("lab-before"), None, 0))
    [setting] = [r.setting for r in audit.results if r.setting.key.endswith("cgroup/memory.max")][
        :1
    ]
    assert KNOB.matches(setting, "268435456")
    assert KNOB.matches(setting, str(268435456 - 4096))  # one page below: rounded
    assert not KNOB.matches(setting, str(268435456 - 64 * 1024))
    assert not KNOB.matches(setting, "infinity")


# --- Parsing -----------------------------------------------------------------------------------


def test_the_state_parser_reads_the_captured_systemctl_output() -> None:
    result = capture("lab-restarted").command(command_name(FEED))
    assert result is not None
    state = parse_state(result.lines)
    assert (state.init, state.cgroup_v2, state.pid) == ("systemd", True, 831)
    assert state.properties["ControlGroup"] == f"/system.slice/{FEED}"
    assert state.cgroup == {
        "cpuset.cpus.effective": "2-3",
        "cpuset.mems.effective": "1",
        "memory.max": "268435456",
        "cpu.weight": "500",
    }
    assert state.memlock == "infinity"
    assert kernel_policy(state.numa_maps.split()[1]) == "bind:1"


def test_canonical_values() -> None:
    assert canonical("CPUWeight", "[not set]") == ""
    assert canonical("NUMAPolicy", "n/a") == ""
    assert canonical("AllowedCPUs", "0-1 3") == "0-1,3"  # systemd separates ranges by spaces
    assert kernel_policy("interleave:0,1") == "interleave:0-1"
    assert kernel_policy("local") == "local"


# --- Reading and rendering safely ---------------------------------------------------------------


def test_command_names_are_safe_for_any_valid_unit() -> None:
    assert command_name(FEED) == f"unit-{FEED}"
    odd = command_name("getty@tty1.service")
    assert SAFE_NAME.fullmatch(odd) and odd != command_name("getty@tty2.service")


def test_read_commands_and_paths_refuse_unchecked_names() -> None:
    for name in ("a b.service", "x.service; reboot", "../../etc.service", "-.slice", "a.target"):
        with pytest.raises(UnsafeStepError):
            state_shell(name)
        with pytest.raises(UnsafeStepError):
            drop_in_path(name)
    assert "-- qc-lab-feed.service)" in state_shell(FEED)


def test_the_drop_in_says_everything_and_is_stable() -> None:
    audit = audit_host(load_profile(str(PROFILE)), HostRead("h", capture("lab-applied"), None, 0))
    readings = capture("lab-applied")
    settings = [r.setting for r in audit.results if r.setting.family == "units"]
    assert audit.topology is not None
    files = {file.path: file for file in KNOB.native_files(settings, readings, audit.topology)}
    feed = files[f"/etc/systemd/system/{FEED}.d/90-quietcore.conf"]
    body = feed.content.split("[Service]\n")[1]
    assert body == (
        "AllowedCPUs=2-3\nAllowedMemoryNodes=1\nMemoryMax=268435456\nCPUWeight=500\n"
        "NUMAPolicy=bind\nNUMAMask=1\nLimitMEMLOCK=infinity\n"
    )
    assert [run.argv for run in feed.activate] == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "--quiet", "daemon-reload"),
    ]
    # What the lab host has (written by apply from this very rendering) equals a new render.
    assert readings.text(feed.path) in (None, feed.content.removesuffix("\n"))
    slice_file = files["/etc/systemd/system/machine.slice.d/90-quietcore.conf"]
    assert "[Slice]\nAllowedCPUs=3\nAllowedMemoryNodes=1\nMemoryMax=536870912\nCPUWeight=200\n" in (
        slice_file.content
    )


def test_rendering_refuses_a_value_systemd_could_misread() -> None:
    audit = audit_host(load_profile(str(PROFILE)), HostRead("h", capture("lab-before"), None, 0))
    [setting] = [r.setting for r in audit.results if r.setting.key == f"units/{FEED}/CPUWeight"]
    from dataclasses import replace

    for bad in ("500\nExecStartPre=/bin/sh", "0", "99999"):
        with pytest.raises(UnsafeStepError):
            render_drop_in(FEED, [replace(setting, desired=bad)])
