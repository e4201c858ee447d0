"""Which CPUs and which backend, on the real answer of the 2-vCPU Firecracker VM (see
tests/data/bundles/README.md), and on variants of it for hosts that lack a tool."""

from __future__ import annotations

import dataclasses

import pytest
from tests.bundles import load_readings

from quietcore.probes.choose import (
    ControllerBuild,
    ProbeRefusedError,
    Sources,
    check_policy,
    choose_backend,
    choose_cpus,
    missing_files,
)
from quietcore.probes.env import ProbeEnv, parse_probe_env
from quietcore.profile.cpuplan import CpuPlan
from quietcore.topology import parse_topology

READINGS = load_readings("probe-env-firecracker-2cpu")
ENV = parse_probe_env(READINGS)
TOPOLOGY = parse_topology(READINGS)
BINARY = ControllerBuild("x86_64", b"\x7fELF probe", static=True)
SOURCES = Sources(c_source=b"int main(void){}", python_probe=b"print()", c_build=BINARY)


def test_env_of_the_real_vm() -> None:
    assert ENV.arch == "x86_64"
    assert ENV.home == "/root"
    assert ENV.cache_dir == "/root/.cache/quietcore/probe"
    assert ENV.compiler == "/usr/bin/cc"
    assert set(ENV.tools) == {"cc", "gcc", "oslat", "python3"}
    assert ENV.python == (3, 11)
    assert ENV.rt_runtime_us == 950000
    assert ENV.isolated == frozenset()
    assert ENV.cached == frozenset()


def _without(*tools: str, **changes: object) -> ProbeEnv:
    kept = {name: path for name, path in ENV.tools.items() if name not in tools}
    return dataclasses.replace(ENV, tools=kept, **changes)  # type: ignore[arg-type]


def test_auto_takes_the_controller_built_c_probe_and_uploads_it_once() -> None:
    choice = choose_backend("auto", ENV, SOURCES)
    assert choice.backend == "c"
    assert choice.reason.startswith("auto: C probe compiled on the controller (x86_64, static)")
    [upload] = missing_files(choice, ENV)
    assert upload.remote.startswith("/root/.cache/quietcore/probe/qc_probe-")
    assert upload.data == BINARY.data
    assert choice.argv == (upload.remote,)
    cached = dataclasses.replace(ENV, cached=frozenset({upload.name}))
    assert missing_files(choose_backend("auto", cached, SOURCES), cached) == ()


def test_c_compiles_on_the_host_when_the_controller_cannot_build_for_it() -> None:
    arm = dataclasses.replace(ENV, arch="aarch64")
    choice = choose_backend("c", arm, SOURCES)
    assert choice.reason == "C probe compiled on the host with /usr/bin/cc"
    assert choice.compile_argv is not None and choice.compile_argv[0] == "/usr/bin/cc"
    assert choice.compiled is not None and choice.argv == (choice.compiled,)
    [source] = missing_files(choice, arm)
    assert source.remote == choice.compile_argv[-1]


def test_auto_falls_back_to_oslat_then_python_and_says_why() -> None:
    no_cc = _without("cc", "gcc", arch="aarch64")
    choice = choose_backend("auto", no_cc, SOURCES)
    assert choice.backend == "oslat"
    assert "c: the controller cannot build for aarch64 and the host has no C compiler" in (
        choice.reason
    )
    python = choose_backend("auto", _without("cc", "gcc", "oslat", arch="aarch64"), SOURCES)
    assert python.backend == "python"
    assert "oslat: not installed on the host" in python.reason
    assert python.argv[0] == ENV.tools["python3"]


def test_a_backend_asked_for_by_name_is_refused_with_the_reason() -> None:
    with pytest.raises(ProbeRefusedError, match="oslat: not installed"):
        choose_backend("oslat", _without("oslat"), SOURCES)
    with pytest.raises(ProbeRefusedError, match=r"python3 is 3\.6; the probe needs 3\.9"):
        choose_backend("python", dataclasses.replace(ENV, python=(3, 6)), SOURCES)
    with pytest.raises(ProbeRefusedError, match="no backend can run"):
        choose_backend("auto", _without("cc", "gcc", "oslat", "python3", arch="aarch64"), SOURCES)


def test_cpus_isolated_comes_from_the_profile_else_the_kernel() -> None:
    plan = CpuPlan(online=TOPOLOGY.online, reserved=frozenset({0}), isolated=frozenset({1}))
    assert choose_cpus("isolated", TOPOLOGY, ENV, plan) == {1}
    with pytest.raises(ProbeRefusedError, match="no isolated CPUs"):
        choose_cpus("isolated", TOPOLOGY, ENV, None)
    kernel = dataclasses.replace(ENV, isolated=frozenset({1}))
    assert choose_cpus("isolated", TOPOLOGY, kernel, None) == {1}


def test_cpus_must_be_online_and_leave_one_for_the_host() -> None:
    assert choose_cpus("1", TOPOLOGY, ENV, None) == {1}
    with pytest.raises(ProbeRefusedError, match="CPU 5 is not online"):
        choose_cpus("1,5", TOPOLOGY, ENV, None)
    with pytest.raises(ProbeRefusedError, match="leaves none"):
        choose_cpus("0-1", TOPOLOGY, ENV, None)
    with pytest.raises(ProbeRefusedError, match="--cpus 'one'"):
        choose_cpus("one", TOPOLOGY, ENV, None)


def test_fifo_is_refused_while_rt_throttling_is_on() -> None:
    check_policy(None, ENV)
    with pytest.raises(ProbeRefusedError, match=r"it is 950000 here.*~50 ms every second"):
        check_policy(80, ENV)
    check_policy(80, dataclasses.replace(ENV, rt_runtime_us=-1))
