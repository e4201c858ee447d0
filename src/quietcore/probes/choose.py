"""Decide, per host, how the probe runs: which CPUs, which backend, what must be uploaded.

Pure: from the host's topology and ``ProbeEnv`` (one read) and what the controller could build.
A host that cannot be probed as asked raises ``ProbeRefusedError`` with the reason; nothing has run
there yet at that point.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from quietcore.probes.build import compile_argv
from quietcore.probes.env import ProbeEnv
from quietcore.probes.result import Backend, Requested
from quietcore.profile.cpuplan import CpuPlan
from quietcore.profile.cpuset import CpuSet, CpuSetError, format_cpulist, parse_cpulist
from quietcore.topology import Topology

AUTO_ORDER: tuple[Backend, ...] = ("c", "oslat", "python")
MIN_PYTHON = (3, 9)


class ProbeRefusedError(ValueError):
    """This host cannot be probed as asked; the message says why."""


@dataclass(frozen=True)
class Upload:
    """A file the controller puts into the host's probe cache (its name carries its hash)."""

    data: bytes
    remote: str

    @property
    def name(self) -> str:
        return self.remote.rsplit("/", 1)[1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ControllerBuild:
    """The C probe compiled on the controller, for one architecture."""

    arch: str
    data: bytes
    static: bool


@dataclass(frozen=True)
class Sources:
    """What the controller has to offer any host."""

    c_source: bytes
    python_probe: bytes
    c_build: ControllerBuild | None  # None: no compiler here (or only for another arch)


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    reason: str
    argv: tuple[str, ...]  # how the probe starts, before its own flags
    files: tuple[Upload, ...] = ()  # what the probe needs in the host's cache
    compile_argv: tuple[str, ...] | None = None  # build on the host first (C, no local build)
    compiled: str | None = None  # the file compile_argv produces


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _cache_dir(env: ProbeEnv, backend: Backend) -> str:
    if env.cache_dir is None:
        raise ProbeRefusedError(
            f"{backend}: the SSH user's $HOME is unset or unusual; no probe cache"
        )
    return env.cache_dir


def missing_files(choice: BackendChoice, env: ProbeEnv) -> tuple[Upload, ...]:
    """The files the host's cache lacks: what must be uploaded before the run."""
    return tuple(upload for upload in choice.files if upload.name not in env.cached)


def _c_choice(env: ProbeEnv, sources: Sources) -> BackendChoice:
    build = sources.c_build
    if build is not None and build.arch == env.arch:
        cache = _cache_dir(env, "c")
        binary = Upload(build.data, f"{cache}/qc_probe-{_short(build.data)}")
        how = "static" if build.static else "dynamically linked"
        return BackendChoice(
            "c",
            f"C probe compiled on the controller ({build.arch}, {how}), cached on the host",
            (binary.remote,),
            files=(binary,),
        )
    if env.compiler is not None:
        cache = _cache_dir(env, "c")
        source = Upload(sources.c_source, f"{cache}/qc_probe-{_short(sources.c_source)}.c")
        compiled = source.remote.removesuffix(".c")
        return BackendChoice(
            "c",
            f"C probe compiled on the host with {env.compiler}",
            (compiled,),
            files=(source,),
            compile_argv=tuple(
                compile_argv(env.compiler, source.remote, f"{compiled}.part", static=False)
            ),
            compiled=compiled,
        )
    where = "the controller cannot build for " + (env.arch or "an unknown architecture")
    raise ProbeRefusedError(f"c: {where} and the host has no C compiler")


def _python_choice(env: ProbeEnv, sources: Sources) -> BackendChoice:
    python = env.tools.get("python3")
    if python is None or env.python is None:
        raise ProbeRefusedError("python: the host has no python3")
    if env.python < MIN_PYTHON:
        found = ".".join(map(str, env.python))
        raise ProbeRefusedError(
            f"python: the host's python3 is {found}; the probe needs 3.9 or newer"
        )
    script = Upload(
        sources.python_probe,
        f"{_cache_dir(env, 'python')}/qc_probe-{_short(sources.python_probe)}.py",
    )
    return BackendChoice(
        "python",
        f"Python probe run by {python}",
        (python, script.remote),
        files=(script,),
    )


def _oslat_choice(env: ProbeEnv) -> BackendChoice:
    oslat = env.tools.get("oslat")
    if oslat is None:
        raise ProbeRefusedError("oslat: not installed on the host (Debian/RHEL package rt-tests)")
    return BackendChoice("oslat", f"oslat found at {oslat}", (oslat,))


def choose_backend(requested: Requested, env: ProbeEnv, sources: Sources) -> BackendChoice:
    """The backend asked for, or for ``auto`` the first of c, oslat, python that can run,
    saying why the ones before it could not."""
    makers = {
        "c": lambda: _c_choice(env, sources),
        "python": lambda: _python_choice(env, sources),
        "oslat": lambda: _oslat_choice(env),
    }
    if requested != "auto":
        return makers[requested]()
    passed: list[str] = []
    for backend in AUTO_ORDER:
        try:
            choice = makers[backend]()
        except ProbeRefusedError as why:
            passed.append(str(why))
            continue
        reason = "auto: " + "; ".join([*passed, choice.reason])
        return BackendChoice(
            choice.backend,
            reason,
            choice.argv,
            choice.files,
            choice.compile_argv,
            choice.compiled,
        )
    raise ProbeRefusedError("no backend can run: " + "; ".join(passed))


def choose_cpus(spec: str, topology: Topology, env: ProbeEnv, plan: CpuPlan | None) -> CpuSet:
    """``isolated`` (the profile's isolated CPUs, else the kernel's) or a CPU list; every CPU
    online, and at least one online CPU left for everything else on the host."""
    if spec == "isolated":
        cpus = plan.isolated if plan is not None and plan.isolated else env.isolated
        if not cpus:
            raise ProbeRefusedError(
                "no isolated CPUs: the profile declares none and the kernel isolates none "
                "(/sys/devices/system/cpu/isolated is empty); name CPUs with --cpus LIST"
            )
    else:
        try:
            cpus = parse_cpulist(spec)
        except CpuSetError as problem:
            raise ProbeRefusedError(f"--cpus {spec!r}: {problem}") from problem
    offline = cpus - topology.online
    if offline:
        raise ProbeRefusedError(
            f"CPU {format_cpulist(offline)} is not online (online: "
            f"{format_cpulist(topology.online)})"
        )
    if cpus >= topology.online:
        raise ProbeRefusedError(
            f"probing every online CPU ({format_cpulist(cpus)}) leaves none for the host's own "
            "work and the probe's driver; leave at least one out"
        )
    return cpus


def check_policy(fifo: int | None, env: ProbeEnv) -> None:
    """SCHED_FIFO only where RT throttling is off: with the default 950000 of 1000000 us the
    kernel stops a spinning FIFO thread for ~50 ms every second, which the probe would report
    as its own jitter."""
    if fifo is not None and env.rt_runtime_us != -1:
        raise ProbeRefusedError(
            f"--fifo needs RT throttling off (kernel.sched_rt_runtime_us = -1); it is "
            f"{env.rt_runtime_us} here, so the kernel would stall the probe ~50 ms every second"
        )
