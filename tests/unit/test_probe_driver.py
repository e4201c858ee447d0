"""The driver script and its answer: real answers of the Firecracker VM for each backend (see
tests/data/jitter/README.md), assembled into results; damaged answers; unsafe values."""

from __future__ import annotations

import dataclasses
import re

import pytest
from tests.bundles import load_readings
from tests.unit.jitter_captures import capture

from quietcore.probes.assemble import host_jitter
from quietcore.probes.choose import BackendChoice, Upload
from quietcore.probes.driver import (
    DriverFormatError,
    ProbeJob,
    UnsafeProbeError,
    driver_script,
    parse_driver_output,
)
from quietcore.probes.env import parse_probe_env
from quietcore.probes.raw import parse_raw
from quietcore.probes.result import HostJitter, RunSettings
from quietcore.topology import parse_topology

READINGS = load_readings("probe-env-firecracker-2cpu")
ENV = parse_probe_env(READINGS)
TOPOLOGY = parse_topology(READINGS)
SETTINGS = RunSettings(2_000_000_000, 5_000, "auto", None)
C_PROBE = "/root/.cache/quietcore/probe/qc_probe-0123456789abcdef"


def _job(backend: str, argv: tuple[str, ...] = (C_PROBE,)) -> ProbeJob:
    choice = BackendChoice(backend, "test", argv)  # type: ignore[arg-type]
    return ProbeJob(choice, (1,), 2_000_000_000, 5_000, driver_cpu=0)


def _assembled(backend: str, text: str) -> HostJitter:
    return host_jitter(
        "@local", SETTINGS, _job(backend), ENV, TOPOLOGY, parse_driver_output(text), 2.5
    )


@pytest.mark.parametrize("backend", ["c", "python"])
def test_probe_answers_become_one_result_per_cpu(backend: str) -> None:
    text = capture(f"driver-{backend}-local-cpu1.txt")
    output = parse_driver_output(text)
    assert set(output.before) == set(output.after) == {"interrupts", "softirqs", "stat"}
    [(returncode, probe_text)] = output.probes.values()
    assert returncode == 0
    raw = parse_raw(probe_text)
    host = _assembled(backend, text)
    assert host.error is None
    [cpu] = host.cpus
    assert (cpu.cpu, cpu.backend, cpu.loops) == (1, backend, raw.loops)
    assert cpu.stats.count == raw.events_total
    # Local timer interrupts on CPU 1 during the run, counted from the two snapshots.
    loc = [re.split(r"\s+", line.strip()) for line in text.splitlines() if "LOC:" in line]
    assert cpu.context.interrupts["LOC"] == int(loc[1][2]) - int(loc[0][2]) > 0
    assert cpu.context.involuntary_switches == raw.involuntary_switches
    assert host.hypervisor == "kvm"


def test_oslat_answer_keeps_oslats_histogram() -> None:
    host = _assembled("oslat", capture("driver-oslat-local-cpu1.txt"))
    [cpu] = host.cpus
    assert cpu.backend == "oslat" and cpu.events == ()
    assert cpu.loops > 10_000_000  # ~20 ns per loop for 2 s
    assert cpu.context.involuntary_switches is None


def test_a_failed_probe_fails_the_host_with_its_stderr() -> None:
    text = capture("driver-c-local-cpu1.txt")
    broken = re.sub(
        r"@@qcprobe probe 1 0\n(.|\n)*?@@qcprobe stderr 1\n",
        "@@qcprobe probe 1 3\n@@qcprobe stderr 1\nerror cannot pin to CPU 1\n",
        text,
    )
    host = _assembled("c", broken)
    assert host.error_kind == "failed"
    assert "CPU 1 failed: error cannot pin to CPU 1" in (host.error or "")


def test_a_truncated_answer_is_refused() -> None:
    text = capture("driver-c-local-cpu1.txt")
    with pytest.raises(DriverFormatError, match="did not finish"):
        parse_driver_output(text[: len(text) // 2])
    with pytest.raises(DriverFormatError, match="before the first marker"):
        parse_driver_output("garbage\n" + text)


def test_script_quotes_only_checked_values() -> None:
    job = _job("c")
    script = driver_script(job, [(C_PROBE, "ab" * 32)])
    assert f"{C_PROBE} --cpu 1 --duration-ns 2000000000 --threshold-ns 5000" in script
    assert f"chmod 700 {C_PROBE}" in script
    with pytest.raises(UnsafeProbeError):
        driver_script(_job("c", ("/tmp/x; rm -rf /",)))
    with pytest.raises(UnsafeProbeError):
        driver_script(dataclasses.replace(job, cpus=(-1,)))
    with pytest.raises(UnsafeProbeError):
        driver_script(job, [("relative/path", "00")])


def test_oslat_gets_whole_seconds_and_its_main_thread_off_the_probed_cpu() -> None:
    job = dataclasses.replace(_job("oslat", ("/usr/bin/oslat",)), duration_ns=2_500_000_000)
    script = driver_script(job)
    assert "/usr/bin/oslat --cpu-list 1 --duration 3 --bucket-size 1024" in script
    assert "--cpu-main-thread 0" in script


def test_host_compile_goes_through_a_part_file() -> None:
    source = Upload(b"int main(void){return 0;}", f"{C_PROBE}.c")
    choice = BackendChoice(
        "c",
        "test",
        (C_PROBE,),
        files=(source,),
        compile_argv=("/usr/bin/cc", "-O2", "-o", f"{C_PROBE}.part", source.remote),
        compiled=C_PROBE,
    )
    script = driver_script(ProbeJob(choice, (1,), 1, 1), [(source.remote, source.sha256)])
    assert f"[ -x {C_PROBE} ] || {{ /usr/bin/cc -O2 -o {C_PROBE}.part {C_PROBE}.c" in script
    assert f"mv -f {C_PROBE}.part {C_PROBE}" in script


PARTITION = "/sys/fs/cgroup/cpuset/quietcore-isolated"


def test_a_probe_of_a_partition_cpu_joins_the_partition_first() -> None:
    job = dataclasses.replace(_job("c"), cpus=(0, 1), partition=(PARTITION, frozenset({1})))
    script = driver_script(job)
    join = f"""sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' qc-join {PARTITION}"""
    assert f"( {join} {C_PROBE} --cpu 1 " in script
    assert f"( {C_PROBE} --cpu 0 " in script  # CPU 0 is not in the partition
    with pytest.raises(UnsafeProbeError):
        driver_script(dataclasses.replace(job, partition=("/sys/x y", frozenset({1}))))


def test_oslat_in_the_partition_keeps_its_main_thread_there() -> None:
    job = dataclasses.replace(
        _job("oslat", ("/usr/bin/oslat",)), partition=(PARTITION, frozenset({1}))
    )
    script = driver_script(job)
    assert f"qc-join {PARTITION} /usr/bin/oslat --cpu-list 1" in script
    assert "--cpu-main-thread 1" in script


def test_the_partition_is_read_from_the_host() -> None:
    readings = load_readings("cpuset-v1-isolated")
    env = parse_probe_env(readings)
    assert env.partition == (PARTITION, frozenset({1}))
    assert parse_probe_env(load_readings("cpuset-v1-untuned")).partition is None
