"""`quietcore jitter` and `verify --jitter` on this machine's CPU 1, through the real CLI: on
@local and over a real loopback sshd (upload, cache), every output, and the profile's gate."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pytest

from quietcore.probes import build
from quietcore.probes.env import CACHE_DIR
from tests.conftest import run_cli
from tests.sshd import SshServer

pytestmark = [pytest.mark.host, pytest.mark.usefixtures("root_only")]

JITTER_SCHEMA = json.loads(
    resources.files("quietcore").joinpath("schemas/jitter-v1.json").read_text()
)
VERIFY_SCHEMA = json.loads(
    resources.files("quietcore").joinpath("schemas/verify-v1.json").read_text()
)


def _only_cpu(document: dict[str, Any]) -> dict[str, Any]:
    [host] = document["hosts"]
    [cpu] = host["cpus"]
    return dict(cpu)


def test_table_on_local_cpu_1_for_10_s() -> None:
    result = run_cli("jitter", "--cpus", "1", "--duration", "10s", "@local")
    assert result.returncode == 0, result.stderr
    assert "@local  backend c (auto: C probe compiled on the controller" in result.stdout
    # CPU 1, not isolated on this machine.
    [row] = [line for line in result.stdout.splitlines() if line.split()[:2] == ["1", "-"]]
    loop_ns = float(row.split()[2])
    assert 0 < loop_ns < 100
    assert "on a VM (kvm)" in result.stdout  # this machine is a Firecracker guest


def test_json_validates_and_every_file_output_is_written(tmp_path: Path) -> None:
    report, hdr, plots = tmp_path / "j.json", tmp_path / "j.hlog", tmp_path / "plots"
    result = run_cli(
        *("jitter", "--cpus", "1", "--duration", "3s", "--format", "json"),
        *("-o", str(report), "--hdr-log", str(hdr), "--plots", str(plots), "@local"),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(report.read_text())
    jsonschema.validate(document, JITTER_SCHEMA)
    cpu = _only_cpu(document)
    assert cpu["cpu"] == 1 and cpu["backend"] == "c"
    assert cpu["duration_s"] == pytest.approx(3, rel=0.05)
    assert cpu["events"]["count"] == sum(cpu["histogram"]["buckets"].values())
    assert len(cpu["timeline"]) == cpu["events"]["count"] - cpu["events"]["dropped"]
    assert "Tag=@local/cpu1," in hdr.read_text()
    svgs = sorted(path.name for path in plots.iterdir())
    assert svgs == ["_local-cpu1-histogram.svg", "_local-cpu1-timeline.svg"]
    for svg in plots.iterdir():
        ElementTree.fromstring(svg.read_text())
    compared = run_cli(
        *("jitter", "--cpus", "1", "--duration", "2s", "--compare", str(report), "@local")
    )
    assert compared.returncode == 0, compared.stderr
    assert "events/s" in compared.stdout and "before" in compared.stdout


def test_over_ssh_the_python_probe_is_uploaded_once_then_cached(
    sshd: SshServer, tmp_path: Path
) -> None:
    script = build.python_probe_source()
    cached = Path.home() / CACHE_DIR / f"qc_probe-{hashlib.sha256(script).hexdigest()[:16]}.py"
    cached.unlink(missing_ok=True)
    inventory = str(sshd.inventory(tmp_path))
    args = ("jitter", "--backend", "python", "--cpus", "1", "--duration", "2s", "-f", "json")
    first = run_cli(*args, inventory)
    assert first.returncode == 0, first.stderr
    cpu = _only_cpu(first.json())
    assert cpu["backend"] == "python" and cpu["loops"] > 0
    assert cached.read_bytes() == script
    # Read, create the cache directory, run; the upload is an SFTP session of its own.
    assert (sshd.commands_run(), sshd.sftp_sessions()) == (3, 1)
    second = run_cli(*args, inventory)
    assert second.returncode == 0, second.stderr
    # The second run only reads and runs.
    assert (sshd.commands_run(), sshd.sftp_sessions()) == (5, 1)


def test_without_a_compiler_here_the_host_compiles_the_c_probe(
    sshd: SshServer, tmp_path: Path
) -> None:
    """The controller's PATH has no compiler; the host (this machine over SSH, with sshd's
    PATH) has cc, so the source is uploaded and built there, once."""
    source = build.probe_source()
    compiled = Path.home() / CACHE_DIR / f"qc_probe-{hashlib.sha256(source).hexdigest()[:16]}"
    compiled.unlink(missing_ok=True)
    controller_env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    args = [sys.executable, "-m", "quietcore", "jitter", "--backend", "c", "--cpus", "1"]
    args += ["--duration", "2s", "-f", "json", str(sshd.inventory(tmp_path))]
    done = subprocess.run(args, capture_output=True, text=True, env=controller_env, check=False)
    assert done.returncode == 0, done.stderr
    [host] = json.loads(done.stdout)["hosts"]
    assert host["backend_reason"].startswith("C probe compiled on the host with /usr/bin/")
    assert host["cpus"][0]["loops"] > 0
    assert compiled.is_file()


def test_fifo_is_refused_while_rt_throttling_is_on() -> None:
    assert Path("/proc/sys/kernel/sched_rt_runtime_us").read_text().strip() != "-1"
    result = run_cli("jitter", "--cpus", "1", "--duration", "1s", "--fifo", "50", "@local")
    assert result.returncode == 2
    assert "--fifo needs RT throttling off" in result.stdout


def test_bad_cpus_are_refused_before_anything_runs() -> None:
    result = run_cli("jitter", "--cpus", "0-1", "--duration", "1s", "@local")
    assert result.returncode == 2
    assert "leaves none for the host's own work" in result.stdout
    duration = run_cli("jitter", "--cpus", "1", "--duration", "10", "@local")
    assert duration.returncode == 2
    assert "needs a unit" in duration.stderr


def _profile(tmp_path: Path, accept: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "name: gate\n"
        "verify:\n"
        "  jitter:\n"
        "    cpus: '1'\n"
        "    duration: 2s\n"
        "    threshold_us: 5\n"
        f"    accept: {accept}\n"
    )
    return path


def test_the_profiles_rules_judge_each_cpu(tmp_path: Path) -> None:
    impossible = _profile(tmp_path, "{max_us: 0.001, events_over_us: {5: 0}}")
    failed = run_cli("jitter", "--profile", str(impossible), "--format", "json", "@local")
    assert failed.returncode == 1, failed.stderr
    cpu = _only_cpu(failed.json())
    rules = {rule["rule"]: rule for rule in cpu["gate"]["rules"]}
    assert cpu["gate"]["ok"] is False
    assert rules["events_over_us.5"]["ok"] is (rules["events_over_us.5"]["measured"] == 0)
    generous = _profile(tmp_path, "{max_us: 1000000, interrupted_pct: 100}")
    passed = run_cli("jitter", "--profile", str(generous), "@local")
    assert passed.returncode == 0, passed.stderr
    assert "PASS" in passed.stdout


def test_verify_jitter_adds_the_measurement_to_the_verify_report(tmp_path: Path) -> None:
    impossible = _profile(tmp_path, "{max_us: 0.001}")
    result = run_cli("verify", "--jitter", "-p", str(impossible), "--format", "json", "@local")
    assert result.returncode == 1, result.stderr
    document = result.json()
    jsonschema.validate(document, VERIFY_SCHEMA)
    jsonschema.validate(document["jitter"], JITTER_SCHEMA)
    assert document["hosts"][0]["status"] == "ok"  # nothing declared but the jitter rules
    assert document["jitter"]["hosts"][0]["status"] == "fail"
