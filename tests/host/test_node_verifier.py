"""The node verifier against this machine's real /proc and /sys, run with the system python3.

Its verdicts must be ``quietcore verify @local``'s for the same keys; its metrics are scraped
over HTTP and parsed with prometheus-client; a copy of the host's files with one file changed
shows drift for that key alone. Nothing under / is changed.
"""

from __future__ import annotations

import glob
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quietcore.audit import reads_for
from quietcore.engine import read_hosts
from quietcore.k8s.node_checks import checks_json
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import resolve
from quietcore.topology import parse_topology
from tests.conftest import run_cli

pytestmark = pytest.mark.host

SCRIPT = Path(__file__).parents[2] / "src/quietcore/k8s/target/qc_node_verifier.py"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"
PROFILES = ("trading", "network-latency")


def _checks(profile: str, path: Path) -> dict[str, Any]:
    loaded = load_profile(profile)
    [read] = read_hosts(["@local"], reads_for(loaded))
    assert read.readings is not None, read.error
    settings = resolve(loaded, parse_topology(read.readings))
    path.write_text(checks_json(settings, profile=profile, digest=f"sha256:{loaded.digest}"))
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _verifier(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEM_PYTHON, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def _drift(text: str) -> dict[str, float]:
    return {
        labels["key"]: value for labels, value in _samples(text)["quietcore_node_setting_drift"]
    }


def _statuses(text: str) -> dict[str, float]:
    return {labels["status"]: value for labels, value in _samples(text)["quietcore_node_checks"]}


@pytest.mark.parametrize("profile", PROFILES)
def test_verdicts_are_verifys_for_the_same_keys(
    profile: str, tmp_path: Path, root_only: None
) -> None:
    document = _checks(profile, tmp_path / "checks.json")
    verify = run_cli("verify", "--profile", profile, "--format", "json", "@local")
    assert verify.returncode in (0, 1), verify.stderr
    [host] = verify.json()["hosts"]
    expected = {setting["key"]: setting["status"] for setting in host["settings"]}

    done = _verifier("--checks", str(tmp_path / "checks.json"), "--host-root", "/", "--once")
    assert done.returncode in (0, 1), done.stderr
    drift = _drift(done.stdout)
    unchecked = {entry["key"] for entry in document["unchecked"]}
    checked = {key: status for key, status in expected.items() if key not in unchecked}
    # Every key verify judged from a file is judged here, and nothing else.
    assert set(drift) == set(checked)
    assert {key for key, value in drift.items() if value == 1} == {
        key for key, status in checked.items() if status in ("drift", "missing")
    }
    counts = Counter(checked.values())
    statuses = _statuses(done.stdout)
    for status in ("ok", "drift", "missing", "unsupported", "immovable"):
        assert statuses[status] == counts.get(status, 0), status
    assert statuses["unchecked"] == len(unchecked)
    assert done.returncode == (1 if any(drift.values()) else 0)
    assert len(checked) > 20  # not vacuous: the profile's file settings were compared


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path, root_only: None) -> Iterator[tuple[str, dict[str, Any]]]:
    document = _checks("trading", tmp_path / "checks.json")
    port = _free_port()
    process = subprocess.Popen(
        [
            SYSTEM_PYTHON,
            str(SCRIPT),
            "--checks",
            str(tmp_path / "checks.json"),
            "--host-root",
            "/",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--interval",
            "0.5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", document
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_metrics_are_served_over_http_and_refreshed(
    served: tuple[str, dict[str, Any]],
) -> None:
    url, document = served
    status, first = _get(f"{url}/metrics")
    assert status == 200
    samples = _samples(first)
    [(labels, value)] = samples["quietcore_node_profile_info"]
    assert labels == {"profile": "trading", "digest": document["profile"]["digest"]}
    assert value == 1
    [(_, checked_at)] = samples["quietcore_node_last_check_timestamp_seconds"]
    assert abs(time.time() - checked_at) < 30
    assert samples["quietcore_node_setting_drift"]
    time.sleep(1.5)  # three intervals: the loop has checked again
    [(_, later)] = _samples(_get(f"{url}/metrics")[1])[
        "quietcore_node_last_check_timestamp_seconds"
    ]
    assert later > checked_at
    assert _get(f"{url}/other")[0] == 404


def _copy_host_files(document: dict[str, Any], root: Path) -> None:
    """Copy every file the checks can read from this host into ``root``."""

    def patterns(check: dict[str, Any]) -> Iterator[str]:
        item = "*" if check.get("each") else ""
        yield check["path"].replace("{item}", item)
        yield from (need["path"] for need in check.get("needs", ()))
        if check.get("owned"):
            yield check["owned"]["flags_path"].replace("{item}", item)
        if check.get("fallback"):
            yield from patterns(check["fallback"])

    for check in document["checks"]:
        for pattern in patterns(check):
            for found in glob.glob(pattern):
                source, target = Path(found), root / found.lstrip("/")
                if source.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                try:
                    text = source.read_text()
                except OSError:
                    continue  # unreadable here too: absent in the copy, as the verifier sees it
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)


def test_a_host_root_copy_with_one_changed_file_shows_drift_there_only(
    tmp_path: Path, root_only: None
) -> None:
    document = _checks("network-latency", tmp_path / "checks.json")
    root = tmp_path / "host"
    _copy_host_files(document, root)
    real = _drift(_verifier("--checks", str(tmp_path / "checks.json"), "--once").stdout)
    copied = _verifier(
        "--checks", str(tmp_path / "checks.json"), "--host-root", str(root), "--once"
    )
    assert _drift(copied.stdout) == real

    [swappiness] = [c for c in document["checks"] if c["key"] == "sysctl/vm.swappiness"]
    target = root / swappiness["path"].lstrip("/")
    for value, drift in ((swappiness["desired"], 0), (f"{swappiness['desired']}1", 1)):
        target.write_text(f"{value}\n")
        changed = _drift(
            _verifier(
                "--checks", str(tmp_path / "checks.json"), "--host-root", str(root), "--once"
            ).stdout
        )
        assert changed["sysctl/vm.swappiness"] == drift
        assert {k: v for k, v in changed.items() if k != "sysctl/vm.swappiness"} == {
            k: v for k, v in real.items() if k != "sysctl/vm.swappiness"
        }
