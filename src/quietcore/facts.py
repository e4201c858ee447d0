"""The one-round-trip pyinfra fact: topology and every knob a profile needs, in one command.

pyinfra runs each fact as its own exec channel, so reading N knobs as N facts would cost N
round trips per host. ``HostBundle`` instead sends one POSIX shell script assembled from the
``ReadSpec`` of the topology and of every knob family, and parses the answer into
``Readings`` (see ``quietcore.readings`` for the output protocol).
"""

from __future__ import annotations

from collections.abc import Iterable

from pyinfra.api.facts import FactBase

from quietcore.readings import MARKER, SAFE_NAME, SAFE_PATH, Readings, ReadSpec, parse_bundle_output


class UnsafeReadError(ValueError):
    """A read request that would put unchecked text into the host's shell."""


def merge_reads(specs: Iterable[ReadSpec]) -> ReadSpec:
    """Union of several read specs, keeping first-seen order and dropping repeats."""
    files: dict[str, None] = {}
    commands: dict[str, str] = {}
    for spec in specs:
        files.update(dict.fromkeys(spec.files))
        for name, shell in spec.commands:
            if commands.setdefault(name, shell) != shell:
                raise UnsafeReadError(f"two different commands are both named {name!r}")
    return ReadSpec(tuple(files), tuple(commands.items()))


def bundle_script(spec: ReadSpec) -> str:
    """The shell script that reads ``spec`` on a host and prints the bundle protocol."""
    for path in spec.files:
        if not SAFE_PATH.match(path):
            raise UnsafeReadError(f"refusing to read {path!r}: not a plain absolute path or glob")
    for name, _ in spec.commands:
        if not SAFE_NAME.match(name):
            raise UnsafeReadError(f"refusing command name {name!r}")
    paths = " ".join(spec.files)
    parts = [
        # C locale: tool output (ethtool, systemctl) in the form the parsers expect.
        "export LC_ALL=C",
        f"echo '{MARKER} files'",
    ]
    if paths:
        # -a: some sysfs files hold NUL bytes; -s: missing files are normal, not errors.
        parts.append(f"grep -a -s -H '' {paths}")
        parts.append(f"echo '{MARKER} empty'")
        parts.append(f"grep -a -s -L '' {paths}")
    for name, shell in spec.commands:
        parts.append(f"echo '{MARKER} cmd {name}'")
        parts.append(f'( {shell} ) 2>&1 </dev/null; echo "{MARKER} rc $?"')
    parts.append(f"echo '{MARKER} end'")
    return "\n".join(parts)


class HostBundle(FactBase[Readings]):
    """Reads everything in one command; ``files``/``commands`` come from a ``ReadSpec``."""

    def command(self, files: tuple[str, ...], commands: tuple[tuple[str, str], ...]) -> str:
        return bundle_script(ReadSpec(files, commands))

    def process(self, output: list[str]) -> Readings:
        return parse_bundle_output(output)
