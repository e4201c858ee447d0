"""The molecule scenario (molecule/default) end to end: ``molecule test`` boots its own lab,
applies the scenario's profile with ``quietcore apply``, applies it again (molecule's
idempotence step: a no-op apply must report no change), verifies it and stops the lab.

It runs the way a team would run it: ``molecule test`` in the repository, with the venv's
bin first on PATH (molecule shells out to ``ansible-config``, ``ansible-playbook`` and, through
the playbooks, ``quietcore``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.conftest import UP_TIMEOUT, run_lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
# The lab name in molecule/default/inventory.yml.
LAB = "molecule"


def _molecule_env() -> dict[str, str]:
    venv_bin = Path(sys.executable).parent  # not resolved: the venv's bin, not the base Python's
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Plain text, so the step results can be matched.
    for name in ("PY_COLORS", "CLICOLOR", "FORCE_COLOR", "ANSIBLE_FORCE_COLOR"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    return env


def test_molecule_test_passes_including_idempotence(root_only: None) -> None:
    env = _molecule_env()
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["molecule", "test"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream, in order: steps and playbook output
            text=True,
            # The image build (first run only) and a TCG boot, then the playbooks.
            timeout=UP_TIMEOUT + 600,
            check=False,
        )
    finally:
        # molecule destroys on failure too, but not if it is killed by the timeout.
        run_lab("down", LAB)
    sys.stderr.write(f"molecule test took {time.monotonic() - started:.0f} s\n")
    output = done.stdout
    tail = output[-8000:]
    assert done.returncode == 0, tail
    # molecule's summary: one line per step ("default > idempotence: Executed: Successful").
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"^default (>|➜) {step}: Executed: Successful", output, re.M), tail
    # The first apply changed the untuned lab, so idempotence compared a real change with a
    # no-op, not two no-ops.
    assert _task_results(output, "Apply the profile with quietcore") == ["changed", "ok"], tail


def _task_results(output: str, task: str) -> list[str]:
    """The result (``ok``, ``changed``, ``fatal``...) of each run of a task, in order."""
    results = []
    for chunk in output.split("TASK [")[1:]:
        if chunk.startswith(f"{task}]"):
            found = re.search(r"^(\w+): \[localhost\]", chunk, re.M)
            results.append(found.group(1) if found else "?")
    return results
