"""What a host offers the probe, read in the same round trip as its topology.

The architecture (can a binary built here run there?), the tools on its PATH (a compiler,
oslat, python3), the probes already cached there, and the kernel state that decides how the
probe may run (RT throttling, isolated and nohz_full CPUs). Pure: parsed from ``Readings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quietcore import cgroup_layout
from quietcore.profile.cpuset import CpuSet, CpuSetError, parse_cpulist
from quietcore.readings import Readings, ReadSpec

RT_RUNTIME = "/proc/sys/kernel/sched_rt_runtime_us"
ISOLATED = "/sys/devices/system/cpu/isolated"
NOHZ_FULL = "/sys/devices/system/cpu/nohz_full"
# Cached probes live in the SSH user's own home: a world-writable directory would let another
# user plant a binary that quietcore then runs.
CACHE_DIR = ".cache/quietcore/probe"
TOOLS = ("cc", "gcc", "clang", "oslat", "python3")

_ENV_SHELL = (
    'echo "arch $(uname -m)"; echo "home $HOME"; '
    f"for tool in {' '.join(TOOLS)}; do "
    'found=$(command -v "$tool") && echo "tool $tool $found"; done; '
    "python3 -c 'import sys; print(\"python %d.%d\" % sys.version_info[:2])' 2>/dev/null; "
    f'ls -1 "$HOME/{CACHE_DIR}" 2>/dev/null | sed "s/^/cached /"; true'
)
# quietcore's runtime partition (knobs/cpuset.py): a probe of its CPUs must run inside it.
PARTITION_FILES: tuple[tuple[str, str], ...] = tuple(
    (
        cgroup_layout.partition(version),
        f"{cgroup_layout.partition(version)}/{cgroup_layout.EFFECTIVE_CPUS[version]}",
    )
    for version in ("v2", "v1")
)
PROBE_READS = ReadSpec(
    files=(RT_RUNTIME, ISOLATED, NOHZ_FULL, *(file for _, file in PARTITION_FILES)),
    commands=(("probe-env", _ENV_SHELL),),
)

# What may reach a command line or a path on the host: no spaces, quotes or shell syntax.
SAFE_HOST_PATH = re.compile(r"^/[A-Za-z0-9_./+-]+$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class ProbeEnv:
    arch: str | None
    home: str | None  # None when $HOME is unset or not a plain path
    tools: dict[str, str]  # tool name -> absolute path on the host
    python: tuple[int, int] | None
    cached: frozenset[str]  # file names in the host's probe cache
    rt_runtime_us: int | None
    isolated: CpuSet
    nohz_full: CpuSet
    # quietcore's runtime partition: (cgroup directory, effective CPUs), when there is one.
    partition: tuple[str, CpuSet] | None = None

    @property
    def cache_dir(self) -> str | None:
        return None if self.home is None else f"{self.home.rstrip('/')}/{CACHE_DIR}"

    @property
    def compiler(self) -> str | None:
        return next(
            (self.tools[name] for name in ("cc", "gcc", "clang") if name in self.tools), None
        )


def _cpus(readings: Readings, path: str) -> CpuSet:
    line = readings.first_line(path)
    try:
        return parse_cpulist(line) if line else frozenset()
    except CpuSetError:
        return frozenset()


def _int(readings: Readings, path: str) -> int | None:
    line = readings.first_line(path)
    try:
        return int(line) if line else None
    except ValueError:
        return None


def parse_probe_env(readings: Readings) -> ProbeEnv:
    arch = home = None
    tools: dict[str, str] = {}
    python: tuple[int, int] | None = None
    cached: set[str] = set()
    result = readings.command("probe-env")
    for line in result.lines if result else ():
        word, _, rest = line.partition(" ")
        if word == "arch" and _SAFE_WORD.match(rest):
            arch = rest
        elif word == "home" and SAFE_HOST_PATH.match(rest):
            home = rest
        elif word == "tool":
            name, _, path = rest.partition(" ")
            if name in TOOLS and SAFE_HOST_PATH.match(path):
                tools[name] = path
        elif word == "python" and re.fullmatch(r"\d+\.\d+", rest):
            major, minor = rest.split(".")
            python = (int(major), int(minor))
        elif word == "cached" and _SAFE_WORD.match(rest):
            cached.add(rest)
    return ProbeEnv(
        arch=arch,
        home=home,
        tools=tools,
        python=python,
        cached=frozenset(cached),
        rt_runtime_us=_int(readings, RT_RUNTIME),
        isolated=_cpus(readings, ISOLATED),
        nohz_full=_cpus(readings, NOHZ_FULL),
        partition=next(
            (
                (directory, _cpus(readings, file))
                for directory, file in PARTITION_FILES
                if readings.first_line(file)
            ),
            None,
        ),
    )
