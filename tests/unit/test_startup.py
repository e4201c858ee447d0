"""What the quietcore program loads, and how: each command's modules only, entry points found as
a fresh scan finds them, every command and report format resolvable."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from quietcore import lazy
from quietcore.cli import COMMANDS, main
from quietcore.report.formats import RENDERERS


def _modules_loaded_by(*arguments: str) -> set[str]:
    """The modules a fresh ``quietcore ARGUMENTS`` process has loaded when it exits."""
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        "from quietcore.cli import run\n"
        f"sys.argv = ['quietcore', *{list(arguments)!r}]\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_verify_loads_neither_apply_nor_the_probes_nor_the_lab() -> None:
    loaded = _modules_loaded_by("verify", "--help")
    assert "quietcore.verify_command" in loaded
    others = {
        name
        for name in loaded
        if name.startswith(("quietcore.converge", "quietcore.probes", "quietcore.lab"))
        or name in ("quietcore.report.html", "quietcore.report.junit", "quietcore.report.diff")
    }
    assert others == set()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_loads(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name


@pytest.mark.parametrize("name", list(RENDERERS))
def test_every_report_format_loads(name: str) -> None:
    assert callable(lazy.load(RENDERERS[name]))


def test_entry_points_after_start_up_are_those_a_fresh_scan_finds() -> None:
    groups = ("console_scripts", "pyinfra.connectors", "gevent.plugins.monkey.will_patch_all")
    script = (
        "import json\n"
        "from importlib import metadata\n"
        "scan = metadata.entry_points\n"
        "def names(found): return sorted(f'{e.group}:{e.name}={e.value}' for e in found)\n"
        f"groups = {groups!r}\n"
        "before = {g: names(scan(group=g)) for g in groups}\n"
        "before['*'] = names(scan())\n"
        "from quietcore import startup\n"
        "startup.prepare()\n"
        "after = {g: names(metadata.entry_points(group=g)) for g in groups}\n"
        "after['*'] = names(metadata.entry_points())\n"
        "print(json.dumps([before, after]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, after = json.loads(done.stdout)
    assert before["pyinfra.connectors"]  # the comparison is about something
    assert after == before
