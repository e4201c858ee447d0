"""From what the driver printed on a host to that host's ``HostJitter``. Pure.

Every probe's output is checked on its own: one CPU whose probe failed makes the host's run
``failed`` with that probe's reason, since a partial answer would read as a quiet CPU.
"""

from __future__ import annotations

import dataclasses

from quietcore.probes.context import (
    ProcDeltas,
    ProcFormatError,
    ProcSnapshot,
    cpu_context,
    proc_deltas,
)
from quietcore.probes.driver import DriverOutput, ProbeJob
from quietcore.probes.env import ProbeEnv
from quietcore.probes.oslat import OslatFormatError, oslat_cpu_jitter, parse_oslat_json
from quietcore.probes.raw import RawFormatError, parse_raw
from quietcore.probes.result import CpuJitter, HostJitter, RunSettings
from quietcore.probes.stats import cpu_jitter
from quietcore.topology import Topology


class ProbeRunError(ValueError):
    """A probe on the host failed or printed something unreadable."""


def _snapshot(files: dict[str, str]) -> ProcSnapshot:
    try:
        return ProcSnapshot(files["interrupts"], files["softirqs"], files["stat"])
    except KeyError as missing:
        raise ProbeRunError(f"/proc/{missing.args[0]} was not read around the run") from None


def _probe_cpus(
    job: ProbeJob, output: DriverOutput, deltas: ProcDeltas, env: ProbeEnv
) -> list[CpuJitter]:
    results = []
    for cpu in job.cpus:
        if cpu not in output.probes:
            raise ProbeRunError(f"no output from the probe on CPU {cpu}")
        returncode, text = output.probes[cpu]
        if returncode != 0:
            why = "; ".join(output.errors) or f"exit status {returncode}"
            raise ProbeRunError(f"the probe on CPU {cpu} failed: {why}")
        raw = parse_raw(text)
        context = cpu_context(
            deltas,
            cpu,
            isolated=env.isolated,
            nohz_full=env.nohz_full,
            voluntary_switches=raw.voluntary_switches,
            involuntary_switches=raw.involuntary_switches,
        )
        results.append(cpu_jitter(raw, context))
    return results


def _oslat_cpus(
    job: ProbeJob, output: DriverOutput, deltas: ProcDeltas, env: ProbeEnv
) -> list[CpuJitter]:
    if output.oslat is None:
        raise ProbeRunError("oslat did not run")
    returncode, text = output.oslat
    if returncode != 0 or not text.strip():
        why = "; ".join(output.errors) or f"exit status {returncode}"
        raise ProbeRunError(f"oslat failed: {why}")
    threads = {thread.cpu: thread for thread in parse_oslat_json(text)}
    missing = set(job.cpus) - set(threads)
    if missing:
        raise ProbeRunError(f"oslat reported no thread for CPU {sorted(missing)}")
    return [
        oslat_cpu_jitter(
            threads[cpu],
            job.threshold_ns,
            cpu_context(deltas, cpu, isolated=env.isolated, nohz_full=env.nohz_full),
        )
        for cpu in job.cpus
    ]


def host_jitter(
    host: str,
    settings: RunSettings,
    job: ProbeJob,
    env: ProbeEnv,
    topology: Topology,
    output: DriverOutput,
    elapsed_s: float,
) -> HostJitter:
    measured = HostJitter(
        host,
        settings,
        backend=job.choice.backend,
        backend_reason=job.choice.reason,
        hypervisor=topology.hypervisor,
        sched_rt_runtime_us=env.rt_runtime_us,
        kernel=topology.kernel_release or None,
        elapsed_s=elapsed_s,
    )
    try:
        deltas = proc_deltas(_snapshot(output.before), _snapshot(output.after), job.cpus)
        collect = _oslat_cpus if job.choice.backend == "oslat" else _probe_cpus
        cpus = collect(job, output, deltas, env)
    except (ProbeRunError, ProcFormatError, RawFormatError, OslatFormatError) as problem:
        return dataclasses.replace(measured, error=str(problem), error_kind="failed")
    return dataclasses.replace(measured, cpus=tuple(cpus))
