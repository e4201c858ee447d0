"""`quietcore jitter` against the lab over SSH: every backend runs there (the C probe built on
the controller and uploaded, the Python probe on the guest's python3, the guest's oslat), the
JSON validates, and a qemu guest is labelled as a VM."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from tests.conftest import run_cli
from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

SCHEMA = json.loads(resources.files("quietcore").joinpath("schemas/jitter-v1.json").read_text())


def test_table_against_the_lab(lab_vm: Lab) -> None:
    result = run_cli("jitter", "--cpus", "1", "--duration", "10s", str(lab_vm.inventory))
    assert result.returncode == 0, result.stderr
    assert "backend c (auto: C probe compiled on the controller" in result.stdout
    assert "on a VM (" in result.stdout
    assert [line for line in result.stdout.splitlines() if line.split()[:2] == ["1", "-"]]


@pytest.mark.parametrize("backend", ["c", "python", "oslat"])
def test_every_backend_runs_in_the_lab(lab_vm: Lab, backend: str) -> None:
    result = run_cli(
        *("jitter", "--backend", backend, "--cpus", "2-3", "--duration", "3s"),
        *("--format", "json", str(lab_vm.inventory)),
    )
    assert result.returncode == 0, result.stderr
    document = result.json()
    jsonschema.validate(document, SCHEMA)
    [host] = document["hosts"]
    assert host["backend"] == backend
    assert host["vm"] is not None
    assert [cpu["cpu"] for cpu in host["cpus"]] == [2, 3]
    for cpu in host["cpus"]:
        assert cpu["loops"] > 0
        assert cpu["context"]["interrupts"]  # the guest's timer ticks at least
