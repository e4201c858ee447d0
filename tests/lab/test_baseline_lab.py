"""The regression acceptance test: a baseline saved on the quiet lab (runtime isolation, the
probe alone on isolated CPU 3), then a noise injector on CPU 3 inside the partition, and
`verify --against` fails naming CPU 3's p99.

The injector is a busy loop at SCHED_FIFO 1: with RT throttling on (the kernel's default 950 ms
of every second) it holds CPU 3 for 950 ms each second, so the probe sees gaps of about a
second. A plain busy loop only shares the CPU in scheduler slices (a few ms), and on this
machine a quiet TCG guest's p99 gap is already tens of ms when other VMs compete for the host's
two CPUs (measured: 35.9 ms quiet, 54.8 ms with a plain busy loop, 951 ms with the FIFO one)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import run_cli
from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

PROFILE = str(Path(__file__).resolve().parents[1] / "data" / "baseline" / "lab-regression.yaml")
SCHEMA = json.loads(resources.files("quietcore").joinpath("schemas/verify-v1.json").read_text())
PARTITION = "/sys/fs/cgroup/quietcore-isolated"
# Joins the partition (nothing outside it may run on CPU 3), pins itself to CPU 3 and spins at
# SCHED_FIFO 1; detached, so the SSH session returns. Prints its PID.
INJECTOR = (
    "setsid sh -c 'echo $$ > " + PARTITION + "/cgroup.procs && exec chrt -f 1 taskset -c 3 "
    'sh -c "while :; do :; done"\' </dev/null >/dev/null 2>&1 & echo $!'
)
# The second in every second that RT throttling leaves to other tasks: without it the FIFO loop
# would starve the probe (and CPU 3's kernel threads) for good.
RT_RUNTIME_US = 950000
REGRESSED = re.compile(r"^\s*lab-pytest cpu3 p99 regressed: ([0-9.]+) us -> ([0-9.]+) us \(")


def test_a_noisy_isolated_cpu_fails_against_the_quiet_baseline(
    lab_vm: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUIETCORE_STATE_DIR", str(tmp_path))
    target = str(lab_vm.inventory)
    applied = run_cli("apply", "--yes", "-p", PROFILE, "--reboot", "never", target, timeout=600)
    injector = None
    try:
        # Exit 1 at most for IRQs that move at their next interrupt (docs/isolation.md).
        assert applied.returncode in (0, 1), applied.stdout + applied.stderr
        saved = run_cli("baseline", "save", "--name", "quiet", "-p", PROFILE, target)
        assert saved.returncode == 0, saved.stdout + saved.stderr
        shown = run_cli("baseline", "show", "quiet", "-f", "json")
        document = shown.json()
        jsonschema.validate(document, SCHEMA)
        [measured] = document["jitter"]["hosts"]
        [quiet_cpu] = measured["cpus"]
        assert quiet_cpu["cpu"] == 3

        throttle = lab_vm.ssh("cat /proc/sys/kernel/sched_rt_runtime_us").strip()
        assert int(throttle) == RT_RUNTIME_US, "RT throttling must be on (the default)"
        injector = lab_vm.ssh(INJECTOR).strip()
        assert lab_vm.ssh(f"cat /proc/{injector}/cpuset").strip() == "/quietcore-isolated"
        judged = run_cli("verify", "-p", PROFILE, "--against", "quiet", target, timeout=300)
    finally:
        if injector is not None:
            lab_vm.ssh(f"kill {injector}")
        rolled = run_cli("rollback", "--yes", target, timeout=600)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert judged.returncode == 1, judged.stdout + judged.stderr
    [line] = [line for line in judged.stdout.splitlines() if REGRESSED.match(line)]
    match = REGRESSED.match(line)
    assert match is not None
    before, now = float(match[1]), float(match[2])
    assert before == pytest.approx(quiet_cpu["events"]["p99_us"], abs=0.05)
    # The FIFO loop holds the CPU for up to 950 ms at a time: gaps of that order, not noise.
    assert now > 100_000 and now > before * 1.2, line
    assert "against baseline quiet" in judged.stdout and ": fail" in judged.stdout
