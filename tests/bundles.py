"""Captured bundle outputs: real answers of real hosts to ``facts.bundle_script``.

``python -m tests.bundles [--profile=P] NAME [FAMILY ...]`` runs the bundle for the topology
and the given knob families (all when none; what profile P, else ``trading``, reads) on *this*
machine and stores the raw output as ``tests/data/bundles/NAME.txt``; tests load them with
``load_readings(NAME)``. Record where each capture came from in ``tests/data/bundles/README.md``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from quietcore.facts import bundle_script, merge_reads
from quietcore.readings import Readings, ReadSpec, parse_bundle_output

BUNDLES = Path(__file__).parent / "data" / "bundles"


def load_readings(name: str) -> Readings:
    return parse_bundle_output((BUNDLES / f"{name}.txt").read_text().splitlines())


def capture_local(spec: ReadSpec) -> str:
    done = subprocess.run(
        ["sh", "-c", bundle_script(spec)], capture_output=True, text=True, check=True
    )
    return done.stdout


def _main(argv: list[str]) -> None:
    from quietcore.knobs.registry import FAMILIES
    from quietcore.profile.load import load_profile
    from quietcore.topology import TOPOLOGY_READS

    profile_name = "trading"
    if argv and argv[0].startswith("--profile="):
        profile_name, argv = argv[0].removeprefix("--profile="), argv[1:]
    name, wanted = argv[0], set(argv[1:])
    profile = load_profile(profile_name).profile
    specs = [TOPOLOGY_READS] + [
        family.reads(profile) for family in FAMILIES if not wanted or family.name in wanted
    ]
    (BUNDLES / f"{name}.txt").write_text(capture_local(merge_reads(specs)))


if __name__ == "__main__":
    _main(sys.argv[1:])
