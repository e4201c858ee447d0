"""The C probe, the Python probe and the noise injector, built and run on CPU 1 of this machine.

Only CPU 1 is probed (CPU 0 runs everything else). sched_rt_runtime_us is set for the tests
that need it and always restored.
"""

from __future__ import annotations

import logging
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quietcore.probes import build
from quietcore.probes.raw import RawCpuRun, parse_raw

pytestmark = [pytest.mark.host]

CPU = "1"
RT_RUNTIME = Path("/proc/sys/kernel/sched_rt_runtime_us")
SECOND_NS = 1_000_000_000


def _compile(source: bytes, name: str) -> Path:
    binary = build.compile_on_controller(source, name, platform.machine())
    assert binary is not None, "this machine has cc: the build must work"
    return binary


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def probes(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """backend -> the command that starts that probe."""
    python_probe = tmp_path_factory.mktemp("target") / "qc_probe.py"
    python_probe.write_bytes(build.python_probe_source())
    return {
        "c": [str(_compile(build.probe_source(), "qc_probe"))],
        "python": [sys.executable, str(python_probe)],
    }


@pytest.fixture(scope="module")
def injector(cache: Path) -> Path:
    return _compile(build.inject_source(), "qc_inject")


def _probe_argv(command: list[str], duration_ns: int) -> list[str]:
    return [*command, "--cpu", CPU, "--duration-ns", str(duration_ns), "--threshold-ns", "5000"]


def _run_probe(command: list[str], duration_ns: int, *extra: str) -> RawCpuRun:
    argv = [*_probe_argv(command, duration_ns), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return parse_raw(done.stdout)


@pytest.fixture(scope="module")
def one_second_runs(probes: dict[str, list[str]]) -> dict[str, RawCpuRun]:
    return {backend: _run_probe(command, SECOND_NS) for backend, command in probes.items()}


@pytest.fixture
def rt_runtime(root_only: None) -> Iterator[Path]:
    saved = RT_RUNTIME.read_text()
    try:
        yield RT_RUNTIME
    finally:
        RT_RUNTIME.write_text(saved)


def test_controller_build_is_static_and_cached(cache: Path, injector: Path) -> None:
    binary = _compile(build.probe_source(), "qc_probe")
    assert build.is_static(binary)
    built_at = binary.stat().st_mtime_ns
    assert _compile(build.probe_source(), "qc_probe") == binary
    assert binary.stat().st_mtime_ns == built_at
    assert sorted(path.name for path in binary.parent.iterdir()) == ["qc_probe"]
    assert build.is_static(injector) and injector.parent != binary.parent


def test_dynamic_build_when_static_linking_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A controller without a static C library (no glibc-static) still builds the probe."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_cc = fake_bin / "cc"
    fake_cc.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = -static ] && '
        '{ echo "/usr/bin/ld: cannot find -lc" >&2; exit 1; }; done\n'
        'exec /usr/bin/cc "$@"\n'
    )
    fake_cc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="quietcore.probes.build"):
        binary = _compile(build.probe_source(), "qc_probe")
    assert not build.is_static(binary)
    assert "cannot find -lc" in caplog.text
    done = subprocess.run([binary], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (2, "error --cpu is required\n")


@pytest.mark.parametrize("backend", ["c", "python"])
def test_one_second_on_cpu_1(one_second_runs: dict[str, RawCpuRun], backend: str) -> None:
    run = one_second_runs[backend]
    assert (run.backend, run.cpu, run.policy, run.threshold_ns) == (backend, 1, "other", 5000)
    # The C probe ends by the warm-up's TSC calibration and reports by the whole run's (a few ns
    # apart); the Python one checks the end time every few thousand reads and may overrun.
    assert SECOND_NS * 0.9999 <= run.duration_ns < SECOND_NS * 1.01
    assert run.events_total == len(run.events) + run.dropped
    assert all(event.duration_ns >= 4990 for event in run.events)
    assert run.voluntary_switches is not None and run.involuntary_switches is not None


def test_loop_periods(one_second_runs: dict[str, RawCpuRun]) -> None:
    """The C probe samples far more often than the Python one; both well below a threshold."""
    c, python = (one_second_runs[backend] for backend in ("c", "python"))
    c_loop, python_loop = c.duration_ns / c.loops, python.duration_ns / python.loops
    assert 1 < c_loop < 20 < python_loop < 500, (c_loop, python_loop)
    assert c.clock == "tsc" and c.tsc_khz is not None and 500_000 < c.tsc_khz < 10_000_000


@pytest.mark.parametrize("backend", ["c", "python"])
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--cpu"],
        ["--cpu", "1", "--duration-ns", "1000"],
        ["--cpu", "-1", "--duration-ns", "1000", "--threshold-ns", "5000"],
        ["--cpu", "1", "--duration-ns", "1e9", "--threshold-ns", "5000"],
        ["--cpu", "1", "--duration-ns", "0", "--threshold-ns", "5000"],
        ["--cpu", "1", "--duration-ns", "1000", "--threshold-ns", "5000", "--fifo", "100"],
        ["--cpu", "1", "--duration-ns", "1000", "--threshold-ns", "5000", "--cpu", "1"],
        ["--cpu", "1", "--duration-ns", "1000", "--threshold-ns", "5000", "--verbose", "1"],
    ],
)
def test_bad_arguments(probes: dict[str, list[str]], backend: str, argv: list[str]) -> None:
    done = subprocess.run(
        [*probes[backend], *argv], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error ") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("backend", ["c", "python"])
def test_fifo_refused_under_rt_throttling(
    probes: dict[str, list[str]], rt_runtime: Path, backend: str
) -> None:
    rt_runtime.write_text("950000\n")
    argv = [*_probe_argv(probes[backend], SECOND_NS), "--fifo", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 3
    assert "RT throttling would stall the probe ~50 ms every 1000 ms" in done.stderr
    assert done.stdout == ""


def test_fifo_runs_without_rt_throttling(probes: dict[str, list[str]], rt_runtime: Path) -> None:
    rt_runtime.write_text("-1\n")
    run = _run_probe(probes["c"], SECOND_NS // 4, "--fifo", "1", "--warmup-ns", "0")
    assert run.policy == "fifo:1"


def _injector_report(text: str) -> dict[str, int]:
    lines = text.splitlines()
    assert lines[-1] == "end"
    return {name: int(value) for name, value in (line.split() for line in lines[:-1])}


def test_injected_noise_is_seen(
    probes: dict[str, list[str]], injector: Path, rt_runtime: Path
) -> None:
    """Smoke check (the fidelity test is the full one): 200 us every 10 ms for 2 s at SCHED_FIFO
    on the probed CPU shows up as one event of about 200 us per injection."""
    rt_runtime.write_text("-1\n")
    inject_argv = [str(injector), "--cpu", CPU, "--period-us", "10000", "--busy-us", "200"]
    probe = subprocess.Popen(
        _probe_argv(probes["c"], 3 * SECOND_NS), stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)  # past the probe's warm-up
        inject = subprocess.run(
            [*inject_argv, "--duration-ns", str(2 * SECOND_NS)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        output, _ = probe.communicate(timeout=30)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    injected = _injector_report(inject.stdout)
    assert injected["injected"] == 199
    assert 200_000 <= injected["busy_ns_min"] <= injected["busy_ns_median"] < 210_000
    # Each injection costs the probe its spin plus two context switches.
    seen = [
        event.duration_ns
        for event in parse_raw(output).events
        if 200_000 <= event.duration_ns <= 400_000
    ]
    assert injected["injected"] * 0.9 <= len(seen) <= injected["injected"] * 1.1
    assert 200_000 <= statistics.median(seen) <= 260_000
