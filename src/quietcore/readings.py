"""What one round trip brings back from a host: file contents and command outputs.

The host side is a single shell script (``facts.bundle_script``). It prints every requested
file through ``grep -H`` (``path:line``), then the names of files that exist but are empty,
then each command's output between markers. ``parse_bundle_output`` turns that text into a
``Readings`` value, and every parser in quietcore (topology and all knob families) reads from
it, so parsers are tested on captured real output without a host.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MARKER = "@@qc"
# Paths the bundle may read: absolute, shell-glob characters allowed, nothing the shell could
# interpret otherwise (no spaces, quotes, '$', ';', ':' which is grep's separator).
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./*?\[\]+-]+$")
SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class ReadSpec:
    """What a family needs from the host. ``files`` are absolute paths or shell globs
    (checked against ``SAFE_PATH``); ``commands`` are (name, shell) pairs whose shell
    text is a constant of the family module, never built from profile text."""

    files: tuple[str, ...] = ()
    commands: tuple[tuple[str, str], ...] = ()


class BundleFormatError(ValueError):
    """The host's answer does not follow the bundle protocol (truncated or corrupted)."""


@dataclass(frozen=True)
class CommandResult:
    lines: tuple[str, ...]
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Readings:
    """File contents (by path, one entry per line) and command results (by name)."""

    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    commands: Mapping[str, CommandResult] = field(default_factory=dict)

    def lines(self, path: str) -> tuple[str, ...] | None:
        """The lines of ``path``, or ``None`` when it did not exist or could not be read."""
        return self.files.get(path)

    def text(self, path: str) -> str | None:
        lines = self.files.get(path)
        return None if lines is None else "\n".join(lines)

    def first_line(self, path: str) -> str | None:
        lines = self.files.get(path)
        if lines is None:
            return None
        return lines[0].strip() if lines else ""

    def glob(self, pattern: str) -> dict[str, tuple[str, ...]]:
        """Every read file whose path matches ``pattern`` (shell-style), sorted by path."""
        return {
            path: lines
            for path, lines in sorted(self.files.items())
            if fnmatch.fnmatchcase(path, pattern)
        }

    def command(self, name: str) -> CommandResult | None:
        return self.commands.get(name)


@dataclass(frozen=True)
class HostRead:
    host: str
    readings: Readings | None
    error: str | None  # why the host could not be read; None when ``readings`` is set
    elapsed_s: float


def parse_bundle_output(lines: list[str]) -> Readings:
    """Parse the bundle's stdout (see module docstring) into ``Readings``."""
    files: dict[str, list[str]] = {}
    commands: dict[str, CommandResult] = {}
    section: str | None = None
    command_name: str | None = None
    command_lines: list[str] = []
    finished = False
    current_path, repeated = "", False
    for line in lines:
        if line.startswith(MARKER + " "):
            words = line.split()
            kind = words[1] if len(words) > 1 else ""
            if kind in ("files", "empty"):
                section = kind
            elif kind == "cmd" and len(words) == 3:
                section, command_name, command_lines = "cmd", words[2], []
            elif kind == "rc" and section == "cmd" and command_name and len(words) == 3:
                commands[command_name] = CommandResult(tuple(command_lines), int(words[2]))
                section, command_name = None, None
            elif kind == "end":
                finished = True
                break
            else:
                raise BundleFormatError(f"unexpected marker line {line!r}")
            continue
        if section == "files":
            path, sep, content = line.partition(":")
            if not sep:
                raise BundleFormatError(f"file line without a path: {line!r}")
            if path != current_path:
                # Two globs can name one file; grep then prints it twice, in separate runs.
                current_path = path
                repeated = path in files
            if not repeated:
                files.setdefault(path, []).append(content)
        elif section == "empty":
            if line:
                files.setdefault(line, [])
        elif section == "cmd":
            command_lines.append(line)
    if not finished:
        raise BundleFormatError("the host's answer ended before the end marker (truncated?)")
    return Readings({p: tuple(v) for p, v in files.items()}, commands)
