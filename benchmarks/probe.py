#!/usr/bin/env python3
"""Side by side on one CPU of this machine: quietcore's C and Python probes against oslat.

For each backend (oslat is run for real, through `quietcore jitter --backend oslat`), idle and
with stress-ng loading every other CPU, repeated: the loop period (ns per spin iteration: the
sampling resolution) and the events above 10 us per 10 s. Prints a Markdown table with medians
and ratios to oslat (loop period: lower is finer; events: the same number means the backends
see the same interruptions). Needs root, rt-tests and stress-ng.

    .venv/bin/python benchmarks/probe.py [--cpu 1] [--duration 10] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BACKENDS = ("oslat", "c", "python")
STATES = ("idle", "stress-ng on the other CPUs")
THRESHOLD_US = 10


@contextmanager
def load_on(cpus: list[int], seconds: int) -> Iterator[None]:
    """stress-ng keeps every CPU but the probed one busy for the run."""
    taskset = ",".join(map(str, cpus))
    stress = subprocess.Popen(
        ["stress-ng", "--cpu", str(len(cpus)), "--taskset", taskset, "--timeout", f"{seconds}s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        stress.terminate()
        stress.wait(timeout=30)


def probe(backend: str, cpu: int, duration: int) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "quietcore",
            "jitter",
            *("--backend", backend, "--cpus", str(cpu), "--duration", f"{duration}s"),
            *("--threshold-us", str(THRESHOLD_US), "--format", "json", "@local"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{backend}: quietcore jitter failed ({done.returncode}):\n{done.stderr}")
    [host] = json.loads(done.stdout)["hosts"]
    [result] = host["cpus"]
    per_10s = result["events"]["count"] * 10 / result["duration_s"]
    return {
        "loop_ns": result["loop_ns"],
        "events_per_10s": per_10s,
        "max_us": result["events"]["max_us"] or 0.0,
    }


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "n/a"


def table(medians: dict[tuple[str, str], dict[str, float]]) -> str:
    lines = [
        "| state | backend | loop period (ns) | x oslat | events >10 µs per 10 s | x oslat |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for state in STATES:
        reference = medians[("oslat", state)]
        for backend in BACKENDS:
            row = medians[(backend, state)]
            lines.append(
                f"| {state} | {backend} | {row['loop_ns']:.1f} | "
                f"{_ratio(row['loop_ns'], reference['loop_ns'])} | "
                f"{row['events_per_10s']:.1f} | "
                f"{_ratio(row['events_per_10s'], reference['events_per_10s'])} |"
            )
    return "\n".join(lines)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    virtual = "hypervisor" in Path("/proc/cpuinfo").read_text()
    return (
        f"{os.cpu_count()} CPUs, {model}, kernel {platform.release()}{', a VM' if virtual else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=int, default=1, help="the CPU to probe (default 1)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = parser.parse_args()
    others = sorted(set(os.sched_getaffinity(0)) - {args.cpu})
    if not others:
        raise SystemExit("needs at least one CPU besides the probed one")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_number in range(args.repeat):
        for state in STATES:
            for backend in BACKENDS:
                print(
                    f"round {round_number + 1}/{args.repeat}: {backend}, {state}", file=sys.stderr
                )
                if state == "idle":
                    result = probe(backend, args.cpu, args.duration)
                else:
                    with load_on(others, args.duration + 30):
                        result = probe(backend, args.cpu, args.duration)
                runs.setdefault((backend, state), []).append(result)
    medians = {
        cell: {metric: statistics.median(run[metric] for run in results) for metric in results[0]}
        for cell, results in runs.items()
    }
    print(
        f"CPU {args.cpu} of {machine()}; {args.repeat} runs of {args.duration} s per cell, "
        "medians; threshold 10 µs"
    )
    print()
    print(table(medians))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {f"{backend}/{state}": value for (backend, state), value in runs.items()}, indent=2
            )
        )


if __name__ == "__main__":
    main()
