"""Run jitter probes on hosts: read what each offers, decide, upload, run, collect.

One of the few modules that touch the outside world. Two passes over the hosts, each in
parallel: one read (topology, tools, cache, kernel state) and one run (upload what the host's
cache lacks, then one command that measures every chosen CPU at once). Every failure is the
failing host's alone.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.state import State

from quietcore.engine import DEFAULT_FAN_OUT, FanOut, HostProgress, on_each_host, read_hosts
from quietcore.facts import merge_reads
from quietcore.probes import build
from quietcore.probes.assemble import host_jitter
from quietcore.probes.choose import (
    ControllerBuild,
    ProbeRefusedError,
    Sources,
    check_policy,
    choose_backend,
    choose_cpus,
    missing_files,
)
from quietcore.probes.driver import DriverFormatError, ProbeJob, driver_script, parse_driver_output
from quietcore.probes.env import PROBE_READS, ProbeEnv, parse_probe_env
from quietcore.probes.request import Request
from quietcore.probes.result import HostJitter, Requested
from quietcore.profile.cpuplan import CpuPlan
from quietcore.readings import Readings
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

log = logging.getLogger(__name__)

LOCAL_HOST = "@local"
# Beyond the spin itself: warm-up, process start, compiling on the host, reading /proc.
RUN_MARGIN_S = 60
PlanCpus = Callable[[Topology], CpuPlan | None]


@dataclass(frozen=True)
class Prepared:
    """A host that can be probed: what was read and how it will run."""

    topology: Topology
    env: ProbeEnv
    job: ProbeJob


def _sources(requested: Requested, arches: set[str]) -> Callable[[str | None], Sources]:
    """The controller's probe files, building the C probe once per architecture asked for."""
    c_source = build.probe_source()
    python_probe = build.python_probe_source()
    builds: dict[str, ControllerBuild | None] = {}
    for arch in arches if requested in ("auto", "c") else ():
        path = build.compile_on_controller(c_source, "qc_probe", arch)
        builds[arch] = (
            None
            if path is None
            else ControllerBuild(arch, path.read_bytes(), static=build.is_static(path))
        )
    return lambda arch: Sources(c_source, python_probe, builds.get(arch or ""))


def prepare(
    readings: Readings, env: ProbeEnv, request: Request, sources: Sources, plan_cpus: PlanCpus
) -> Prepared:
    """Everything decided before anything runs on the host; raises ``ProbeRefusedError``."""
    topology = parse_topology(readings)
    cpus = choose_cpus(request.cpus, topology, env, plan_cpus(topology))
    check_policy(request.settings.fifo_priority, env)
    choice = choose_backend(request.settings.backend_requested, env, sources)
    spare = sorted(topology.online - cpus)
    job = ProbeJob(
        choice,
        tuple(sorted(cpus)),
        request.settings.duration_ns,
        request.settings.threshold_ns,
        request.settings.fifo_priority,
        driver_cpu=spare[0] if spare else None,
        partition=env.partition,
    )
    return Prepared(topology, env, job)


def _run_on_host(prepared: Prepared, timeout_s: int) -> Callable[[State, Any], str]:
    job = prepared.job

    def run(state: State, host: Any) -> str:
        uploads = missing_files(job.choice, prepared.env)
        if uploads:
            cache = shlex.quote(prepared.env.cache_dir or "")
            ok, output = host.run_shell_command(
                StringCommand(f"mkdir -p -m 700 {cache}"), _timeout=timeout_s
            )
            if not ok:
                raise OSError(f"cannot create the probe cache: {output.stderr.strip()}")
        for upload in uploads:
            log.info("%s: uploading %s (%d bytes)", host.name, upload.remote, len(upload.data))
            if not host.put_file(io.BytesIO(upload.data), upload.remote):
                raise OSError(f"uploading {upload.remote} failed")
        sums = [(upload.remote, upload.sha256) for upload in job.choice.files]
        script = driver_script(job, sums)
        _, output = host.run_shell_command(
            StringCommand("sh", "-c", shlex.quote(script)), _timeout=timeout_s
        )
        return str(output.stdout) + ("\n" + output.stderr if output.stderr else "")

    return run


@contextmanager
def _controller_off(cpus: frozenset[int]) -> Iterator[None]:
    """Keep this process (and the commands it starts for @local) off the probed CPUs."""
    before = os.sched_getaffinity(0)
    allowed = before - cpus
    if not cpus or not allowed:
        yield
        return
    os.sched_setaffinity(0, allowed)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def probe_hosts(
    targets: Sequence[str],
    request: Request,
    plan_cpus: PlanCpus,
    fan_out: FanOut = DEFAULT_FAN_OUT,
    *,
    on_done: HostProgress | None = None,
) -> list[HostJitter]:
    """Probe every target's host; results in target order, failures included."""
    reads = read_hosts(
        targets,
        merge_reads([TOPOLOGY_READS, PROBE_READS]),
        fan_out,
    )
    envs = {
        read.host: parse_probe_env(read.readings) for read in reads if read.readings is not None
    }
    sources_for = _sources(
        request.settings.backend_requested, {env.arch or "" for env in envs.values()}
    )
    results: dict[str, HostJitter] = {}
    prepared: dict[str, Prepared] = {}
    for read in reads:
        if read.readings is None:
            results[read.host] = HostJitter(
                read.host, request.settings, error=read.error, error_kind="unreachable"
            )
            continue
        env = envs[read.host]
        try:
            prepared[read.host] = prepare(
                read.readings, env, request, sources_for(env.arch), plan_cpus
            )
        except ProbeRefusedError as why:
            results[read.host] = HostJitter(
                read.host, request.settings, error=str(why), error_kind="refused"
            )
    if prepared:
        timeout = int(request.settings.duration_ns / 1e9) + RUN_MARGIN_S
        works = {name: _run_on_host(item, timeout) for name, item in prepared.items()}
        local = prepared.get(LOCAL_HOST)
        started = time.monotonic()
        with _controller_off(frozenset(local.job.cpus) if local else frozenset()):
            outcomes = on_each_host(
                targets,
                lambda state, host: works[host.name](state, host),
                fan_out,
                on_done=on_done,
                only=set(prepared),
            )
        log.debug("probe run took %.1f s", time.monotonic() - started)
        for outcome in outcomes:
            results[outcome.host] = _collect(
                outcome.host,
                prepared[outcome.host],
                request,
                outcome.value,
                outcome.error,
                outcome.elapsed_s,
            )
    return [results[read.host] for read in reads]


def _collect(
    host: str,
    prepared: Prepared,
    request: Request,
    output: str | None,
    error: str | None,
    elapsed_s: float,
) -> HostJitter:
    if output is None:
        return HostJitter(
            host,
            request.settings,
            error=error or "the probe run failed",
            error_kind="failed",
            elapsed_s=elapsed_s,
        )
    try:
        parsed = parse_driver_output(output)
    except DriverFormatError as problem:
        return HostJitter(
            host, request.settings, error=str(problem), error_kind="failed", elapsed_s=elapsed_s
        )
    return host_jitter(
        host, request.settings, prepared.job, prepared.env, prepared.topology, parsed, elapsed_s
    )
