"""The real jitter captures of tests/data/jitter (see its README.md), turned into results.

All of them come from CPU 1 of this 2-vCPU Firecracker VM: raw probe output (C and Python),
oslat JSON, and /proc/interrupts, /proc/softirqs, /proc/stat read around an oslat run.
"""

from __future__ import annotations

import re
from pathlib import Path

from quietcore.probes.context import ProcDeltas, ProcSnapshot, cpu_context, proc_deltas
from quietcore.probes.oslat import oslat_cpu_jitter, parse_oslat_json
from quietcore.probes.raw import parse_raw
from quietcore.probes.result import CpuContext, CpuJitter
from quietcore.probes.stats import cpu_jitter

DATA = Path(__file__).parent.parent / "data" / "jitter"
OSLAT_2S = "oslat-local-cpu1-2s.json"
OSLAT_B1024 = "oslat-local-cpu1-b1024.json"
RAW_C = "raw-c-local-cpu1.txt"
RAW_PYTHON = "raw-python-local-cpu1.txt"


def capture(name: str) -> str:
    return (DATA / name).read_text()


def snapshot(moment: str) -> ProcSnapshot:
    """The /proc files read ``before`` or ``after`` the captured oslat run."""
    return ProcSnapshot(
        interrupts=capture(f"interrupts-local-{moment}.txt"),
        softirqs=capture(f"softirqs-local-{moment}.txt"),
        stat=capture(f"stat-local-{moment}.txt"),
    )


def local_deltas() -> ProcDeltas:
    return proc_deltas(snapshot("before"), snapshot("after"), [0, 1])


def local_context(
    voluntary: int | None = None, involuntary: int | None = None, *, isolated: bool = False
) -> CpuContext:
    return cpu_context(
        local_deltas(),
        1,
        isolated={1} if isolated else set(),
        nohz_full=set(),
        voluntary_switches=voluntary,
        involuntary_switches=involuntary,
    )


def oslat_cpu(name: str = OSLAT_B1024, threshold_ns: int = 5000) -> CpuJitter:
    (thread,) = parse_oslat_json(capture(name))
    return oslat_cpu_jitter(thread, threshold_ns, local_context())


def probe_cpu(name: str = RAW_C, *, keep: int | None = None) -> CpuJitter:
    """A C or Python probe capture; ``keep`` rewrites it as if the probe had kept only its
    first ``keep`` events (what ``--max-events`` does)."""
    text = capture(name)
    if keep is not None:
        lines = text.splitlines()
        events = [i for i, line in enumerate(lines) if line.startswith("e ")]
        first, end = events[0], events[-1] + 1
        dropped = len(events) - keep
        header = [re.sub(r"^dropped 0$", f"dropped {dropped}", line) for line in lines[:first]]
        text = "\n".join(header + lines[first : first + keep] + lines[end:])
    raw = parse_raw(text)
    return cpu_jitter(raw, local_context(raw.voluntary_switches, raw.involuntary_switches))


def event_durations(name: str) -> list[int]:
    """The kept event durations of a raw capture, read straight from its ``e`` lines."""
    return [int(line.split()[2]) for line in capture(name).splitlines() if line.startswith("e ")]
