#!/usr/bin/env python3
"""qc_probe.py: spin on one CPU and record every gap in execution longer than a threshold.

The Python fallback of the C probe (quietcore/probes/c/qc_probe.c), for hosts where it cannot
be built: same flags, same output (parsed by quietcore/probes/raw.py), ``backend python``. It
reads ``time.perf_counter_ns`` in a loop; when two consecutive reads are further apart than the
threshold, something had the CPU for that long. The interpreter makes the loop several times
slower than the C one, so short gaps are seen less precisely. One process per probed CPU.

Runs on the probed host: standard library only, Python 3.9 or newer.

usage: qc_probe.py --cpu N --duration-ns D --threshold-ns T [--fifo PRIO] [--max-events M]
                   [--warmup-ns W]
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from dataclasses import dataclass

EXIT_BAD_ARGS = 2
EXIT_NO_POLICY = 3
EXIT_OTHER = 4

RT_RUNTIME_PATH = "/proc/sys/kernel/sched_rt_runtime_us"
RT_PERIOD_PATH = "/proc/sys/kernel/sched_rt_period_us"

# Clock reads between two checks of the end time, so the check is almost free; the last chunk
# may overrun the duration by ~0.3 ms, which the reported duration includes.
CHUNK = 4096

DEFAULT_MAX_EVENTS = 1_048_576
DEFAULT_WARMUP_NS = 500_000_000

# flag -> accepted range
FLAGS = {
    "--cpu": (0, 1023),
    "--duration-ns": (1, 10**15),
    "--threshold-ns": (1, 10**12),
    "--fifo": (1, 99),
    "--max-events": (0, 100_000_000),
    "--warmup-ns": (0, 10**12),
}
REQUIRED = ("--cpu", "--duration-ns", "--threshold-ns")


class ProbeError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Options:
    cpu: int
    duration_ns: int
    threshold_ns: int
    fifo: int | None
    max_events: int
    warmup_ns: int


def parse_number(flag: str, text: str, low: int, high: int) -> int:
    # Plain ASCII digits only: int() would also take "-1", " 7", "+7" and "1_000".
    if not (text.isascii() and text.isdigit()):
        raise ProbeError(EXIT_BAD_ARGS, f"{flag}: '{text}' is not a non-negative integer")
    value = int(text)
    if not low <= value <= high:
        raise ProbeError(EXIT_BAD_ARGS, f"{flag}: {text} is out of range {low}..{high}")
    return value


def parse_args(argv: list[str]) -> Options:
    given: dict[str, int] = {}
    for i in range(0, len(argv), 2):
        flag = argv[i]
        if flag not in FLAGS:
            raise ProbeError(EXIT_BAD_ARGS, f"unknown argument '{flag}'")
        if i + 1 >= len(argv):
            raise ProbeError(EXIT_BAD_ARGS, f"{flag} needs a value")
        if flag in given:
            raise ProbeError(EXIT_BAD_ARGS, f"{flag} given twice")
        given[flag] = parse_number(flag, argv[i + 1], *FLAGS[flag])
    for flag in REQUIRED:
        if flag not in given:
            raise ProbeError(EXIT_BAD_ARGS, f"{flag} is required")
    return Options(
        cpu=given["--cpu"],
        duration_ns=given["--duration-ns"],
        threshold_ns=given["--threshold-ns"],
        fifo=given.get("--fifo"),
        max_events=given.get("--max-events", DEFAULT_MAX_EVENTS),
        warmup_ns=given.get("--warmup-ns", DEFAULT_WARMUP_NS),
    )


def pin_to_cpu(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as error:
        raise ProbeError(EXIT_NO_POLICY, f"cannot pin to CPU {cpu}: {error.strerror}") from None


def read_int(path: str) -> int | None:
    try:
        with open(path) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def set_fifo(priority: int) -> None:
    """With RT throttling on (sched_rt_runtime_us != -1) the kernel takes the CPU away from a
    SCHED_FIFO task that never sleeps for (period - runtime) every period: the probe would
    measure the throttle, not the host. Refuse instead of reporting that as jitter."""
    runtime = read_int(RT_RUNTIME_PATH)
    if runtime is None:
        raise ProbeError(EXIT_NO_POLICY, f"--fifo refused: cannot read {RT_RUNTIME_PATH}")
    if runtime != -1:
        period = read_int(RT_PERIOD_PATH) or 1_000_000
        raise ProbeError(
            EXIT_NO_POLICY,
            f"--fifo refused: sched_rt_runtime_us is {runtime}, not -1: RT throttling would "
            f"stall the probe ~{(period - runtime) // 1000} ms every {period // 1000} ms",
        )
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as error:
        raise ProbeError(
            EXIT_NO_POLICY, f"cannot set SCHED_FIFO {priority}: {error.strerror}"
        ) from None


def lock_memory() -> None:
    """Best effort: without it a page fault may add a gap, which is then measured too.

    Only when the lock cannot run out: under a finite RLIMIT_MEMLOCK, MCL_FUTURE would make
    allocations fail once the process outgrows the limit."""
    limit, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if os.geteuid() != 0 and limit != resource.RLIM_INFINITY:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).mlockall(3)  # MCL_CURRENT | MCL_FUTURE
    except (ImportError, OSError, AttributeError):
        pass


class Gaps:
    """Every gap is counted; the first ``capacity`` are kept as (offset_ns, duration_ns)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.kept: list[tuple[int, int]] = []
        self.count = 0
        self.total = 0
        self.longest = 0

    def add(self, offset: int, length: int) -> None:
        self.count += 1
        self.total += length
        self.longest = max(self.longest, length)
        if len(self.kept) < self.capacity:
            self.kept.append((offset, length))


@dataclass(frozen=True)
class Run:
    duration_ns: int
    loops: int


def spin(gaps: Gaps, duration_ns: int, threshold_ns: int) -> Run:
    # Locals only in the loop: a global or attribute lookup would lengthen every iteration.
    clock = time.perf_counter_ns
    add = gaps.add
    chunk = range(CHUNK)
    loops = 0
    start = prev = clock()
    end = start + duration_ns
    while prev < end:
        for _ in chunk:
            now = clock()
            if now - prev > threshold_ns:
                add(prev - start, now - prev)
                # As hiccups does: the time spent storing the event is not a gap.
                now = clock()
            prev = now
        loops += CHUNK
    return Run(prev - start, loops)


def render(options: Options, run: Run, gaps: Gaps, switches: tuple[int, int]) -> str:
    policy = "other" if options.fifo is None else f"fifo:{options.fifo}"
    lines = [
        "qc-probe 1",
        "backend python",
        f"cpu {options.cpu}",
        "clock perf_counter",
        f"policy {policy}",
        f"threshold_ns {options.threshold_ns}",
        f"duration_ns {run.duration_ns}",
        f"loops {run.loops}",
        f"events {gaps.count}",
        f"interrupted_ns {gaps.total}",
        f"max_ns {gaps.longest}",
        f"dropped {gaps.count - len(gaps.kept)}",
        f"nvcsw {switches[0]}",
        f"nivcsw {switches[1]}",
    ]
    lines.extend(f"e {offset} {length}" for offset, length in gaps.kept)
    lines.append("end")
    return "\n".join(lines) + "\n"


def probe(options: Options) -> str:
    pin_to_cpu(options.cpu)
    if options.fifo is not None:
        set_fifo(options.fifo)
    lock_memory()
    # A collection pass in the middle of the spin would show up as a gap of the probe's own.
    gc.disable()
    # Warming up on the spin itself also lets the interpreter specialise its bytecode.
    spin(Gaps(0), options.warmup_ns, options.threshold_ns)
    gaps = Gaps(options.max_events)
    before = resource.getrusage(resource.RUSAGE_SELF)
    run = spin(gaps, options.duration_ns, options.threshold_ns)
    after = resource.getrusage(resource.RUSAGE_SELF)
    switches = (after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw)
    return render(options, run, gaps, switches)


def main(argv: list[str]) -> int:
    try:
        sys.stdout.write(probe(parse_args(argv)))
        sys.stdout.flush()
    except ProbeError as error:
        sys.stderr.write(f"error {error.message}\n")
        return error.code
    except Exception as error:  # the protocol wants an error line, not a traceback
        sys.stderr.write(f"error {type(error).__name__}: {error}\n")
        return EXIT_OTHER
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
