#!/usr/bin/env python3
"""qc_node_verifier.py: judge a Kubernetes node's kernel settings and serve them as metrics.

Runs in quietcore's verifier DaemonSet, in a stock python image: the host's /proc and /sys are
mounted read-only under --host-root, and --checks is the ``quietcore.node-checks/v1`` document
that ``quietcore k8s render`` put into the ConfigMap (made by quietcore/k8s/node_checks.py,
which explains each check kind). Every --interval seconds it reads the checked files again and
serves Prometheus text at http://:PORT/metrics:

  quietcore_node_setting_drift{key}              1 drift or missing, 0 otherwise
  quietcore_node_checks{status}                  ok, drift, missing, unsupported, immovable,
                                                 unchecked (what files cannot show)
  quietcore_node_last_check_timestamp_seconds
  quietcore_node_profile_info{profile,digest}    1

It only reads: nothing is ever written under the host root. The CPU-list, mask, size and
kernel-argument parsing mirrors quietcore.profile.cpuset and quietcore.knobs.cmdline (the unit
tests hold the two to the same answers).

Standard library only, Python 3.9 or newer.

usage: qc_node_verifier.py --checks FILE [--host-root DIR] [--interval S] [--port P]
                           [--address A] [--once]
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCHEMA_ID = "quietcore.node-checks/v1"
ITEM = "{item}"
STATUSES = ("ok", "drift", "missing", "unsupported", "immovable", "unchecked")
DRIFTING = ("drift", "missing")
KINDS = frozenset(
    {
        "exact",
        "cpulist",
        "cpulist_subset",
        "cpumask",
        "bracketed",
        "cmdline_arg",
        "meminfo_kib",
        "all_equal",
        "exists",
    }
)
ABSENT = frozenset({"missing", "unsupported", "drift"})
EXIT_DRIFT = 1
EXIT_BAD_INPUT = 2
MAX_CPUS = 8192
MAX_READ = 1 << 20  # /proc/cmdline, meminfo and sysfs files are far smaller

log = logging.getLogger("qc_node_verifier")

_LIST_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?$")
_MASK_GROUP = re.compile(r"^[0-9a-fA-F]{1,8}$")
_MEMPARSE = re.compile(r"^(\d+)([KMGTPE]?)$", re.IGNORECASE)
_SELECTED = re.compile(r"\[([^\]]+)\]")


class CheckError(ValueError):
    """A checks document the verifier cannot use; names the check and field."""


# --- The kernel's text forms (mirrors of quietcore's parsers) -----------------------------


def parse_cpulist(text: str) -> frozenset[int]:
    """``0-3,8,10-11`` (also ``0-15:2/4`` groups, empty, ``(null)``) as a set of CPUs."""
    text = text.strip()
    if text in ("", "(null)"):
        return frozenset()
    cpus: set[int] = set()
    for item in text.split(","):
        match = _LIST_ITEM.match(item.strip())
        if not match:
            raise ValueError(f"not a CPU list item: {item!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first or last >= MAX_CPUS:
            raise ValueError(f"bad CPU range {item!r}")
        if match.group(3) is not None:
            used, group = int(match.group(3)), int(match.group(4))
            if not 0 < used <= group:
                raise ValueError(f"bad CPU group stride {item!r}")
            cpus.update(c for c in range(first, last + 1) if (c - first) % group < used)
        else:
            cpus.update(range(first, last + 1))
    return frozenset(cpus)


def parse_cpumask(text: str) -> frozenset[int]:
    """A hex mask with or without the kernel's comma-separated 32-bit groups."""
    text = text.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    groups = text.split(",")
    if not text or any(not _MASK_GROUP.match(group) for group in groups):
        raise ValueError(f"not a hex CPU mask: {text!r}")
    value = 0
    for group in groups:
        value = (value << 32) | int(group, 16)
    if value.bit_length() > MAX_CPUS:
        raise ValueError(f"CPU mask {text!r} is beyond {MAX_CPUS} CPUs")
    return frozenset(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_cpulist(cpus: frozenset[int]) -> str:
    ordered = sorted(cpus)
    runs = []
    index = 0
    while index < len(ordered):
        start = end = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == end + 1:
            index += 1
            end = ordered[index]
        runs.append(str(start) if start == end else f"{start}-{end}")
        index += 1
    return ",".join(runs)


def memparse(text: str) -> int:
    """Bytes in a kernel size (``1G``, ``2048k``, ``1073741824``)."""
    match = _MEMPARSE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    exponent = " KMGTPE".index(match.group(2).upper() or " ")
    return int(match.group(1)) << (10 * exponent)


def kernel_arguments(cmdline: str) -> list[str]:
    """The kernel's arguments, quotes removed; a lone ``--`` ends them (the rest is init's)."""
    arguments = []
    word: list[str] = []
    quoted = False
    for char in cmdline + " ":
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            if word:
                argument = "".join(word)
                if argument == "--":
                    break
                arguments.append(argument)
                word = []
        else:
            word.append(char)
    return arguments


def _isolcpus(value: str) -> tuple[frozenset[str], frozenset[int]]:
    items = value.split(",")
    flags = []
    while items and items[0][:1].isalpha():
        flags.append(items.pop(0))
    # isolcpus without flags means ``domain`` (kernel/sched/isolation.c).
    return frozenset(flags) or frozenset({"domain"}), parse_cpulist(",".join(items))


def same_argument(desired: str, actual: str, how: str) -> bool:
    """Whether two kernel arguments mean the same: CPU lists as sets, sizes as bytes."""
    name, has_value, want = desired.partition("=")
    actual_name, actual_has_value, got = actual.partition("=")
    if name != actual_name or has_value != actual_has_value:
        return False
    try:
        if how == "isolcpus":
            return _isolcpus(want) == _isolcpus(got)
        if how == "cpulist":
            return parse_cpulist(want) == parse_cpulist(got)
        if how == "size":
            return memparse(want) == memparse(got)
    except ValueError:  # a value the kernel would not parse either
        return False
    return want == got


# --- Checks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    key: str
    status: str
    actual: str | None = None
    reason: str = ""


class HostFiles:
    """Read-only access to the host's files under ``root``; paths are the host's own."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path: str) -> str | None:
        """The file's text, or ``None`` when it does not exist or cannot be read (a sysfs file
        can exist and still refuse reads, as xps_cpus of a single-queue NIC does)."""
        try:
            with open(self.real(path), encoding="utf-8", errors="replace") as handle:
                return handle.read(MAX_READ)
        except OSError as error:
            if not isinstance(error, FileNotFoundError):
                log.debug("cannot read %s: %s", path, error)
            return None

    def glob(self, pattern: str) -> list[str]:
        """Host paths matching ``pattern``, sorted."""
        prefix = glob.escape(self.root.rstrip("/"))
        found = glob.glob(prefix + pattern)
        return sorted("/" + os.path.relpath(path, self.root) for path in found)

    def exists(self, pattern: str) -> bool:
        if glob.has_magic(pattern):
            return bool(self.glob(pattern))
        return os.path.lexists(self.real(pattern))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _first_line(text: str) -> str:
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


def _meminfo_kib(text: str, label: str) -> int | None:
    for line in text.splitlines():
        name, _, value = line.partition(":")
        words = value.split()
        if name.strip() == label and len(words) == 2 and words[0].isdigit() and words[1] == "kB":
            return int(words[0])
    return None


def _compare(check: dict[str, Any], text: str) -> tuple[bool, str | None]:
    """(ok, actual) for a file's text under the check's kind."""
    kind, desired = check["kind"], check["desired"]
    if kind == "exact":
        actual = _collapse(text)
        return actual == desired or actual in check.get("accept", ()), actual
    if kind == "bracketed":
        match = _SELECTED.search(text)
        actual = match.group(1) if match else text.strip()
        return actual == desired, actual
    if kind == "cmdline_arg":
        name = desired.partition("=")[0]
        found = [a for a in kernel_arguments(text) if a.partition("=")[0] == name]
        if not found:
            return False, None
        return same_argument(desired, found[-1], check.get("argument", "text")), found[-1]
    if kind == "meminfo_kib":
        kib = _meminfo_kib(text, check["label"])
        if kib is None:
            return False, None
        return kib * 1024 == memparse(desired), f"{kib}kB"
    parse = parse_cpumask if kind == "cpumask" else parse_cpulist
    try:
        cpus = parse(_first_line(text))
    except ValueError:
        return False, _first_line(text)
    want = parse_cpulist(desired)
    return (cpus <= want if kind == "cpulist_subset" else cpus == want), format_cpulist(cpus)


def _owned(check: dict[str, Any], item: str, files: HostFiles) -> str | None:
    """Why the kernel, not the administrator, places this IRQ; ``None`` if it may be moved."""
    owned = check.get("owned")
    if owned is None:
        return None
    flags_text = files.read(owned["flags_path"].replace(ITEM, item))
    if flags_text is not None:
        present = {line.strip() for line in flags_text.splitlines()}
        for flag, why in owned["flags"].items():
            if flag in present:
                return str(why)
        return None
    fixed = owned["fixed"].get(item)
    return None if fixed is None else str(fixed)


def _all_equal(check: dict[str, Any], files: HostFiles) -> Verdict:
    key, found = check["key"], files.glob(check["path"])
    if not found:
        return Verdict(key, check.get("absent", "missing"), None, check.get("absent_reason", ""))
    excluded = set(check.get("exclude", ()))
    judged = [path for path in found if path not in excluded]
    values = {path: _collapse(files.read(path) or "") for path in judged}
    wrong = {path: value for path, value in values.items() if value != check["desired"]}
    if wrong:
        shown = " ".join(f"{path}={value}" for path, value in sorted(wrong.items()))
        return Verdict(key, "drift", shown)
    return Verdict(key, "ok", check["desired"])


def evaluate_one(check: dict[str, Any], files: HostFiles, item: str = "") -> Verdict:
    key = check["key"].replace(ITEM, item)
    kind = check["kind"]
    for need in check.get("needs", ()):
        if not files.exists(need["path"]):
            return Verdict(key, need["status"], None, need["reason"])
    if kind == "all_equal":
        return _all_equal(dict(check, key=key), files)
    path = check["path"].replace(ITEM, item)
    if kind == "exists":
        if files.exists(path):
            return Verdict(key, "ok", check["desired"])
        return Verdict(key, check.get("absent", "missing"), None, check.get("absent_reason", ""))
    text = files.read(path)
    if text is not None and not text.strip() and check.get("empty_is_absent"):
        text = None
    if text is None:
        fallback = check.get("fallback")
        if fallback is not None:
            return evaluate_one(fallback, files, item)
        return Verdict(key, check.get("absent", "missing"), None, check.get("absent_reason", ""))
    ok, actual = _compare(check, text)
    owned = _owned(check, item, files) if item else None
    if owned is not None:
        return Verdict(key, "immovable", actual, owned)
    return Verdict(key, "ok" if ok else "drift", actual)


def evaluate(document: dict[str, Any], files: HostFiles) -> list[Verdict]:
    """A verdict for every check (one per match of an ``each`` check), in document order."""
    verdicts = []
    for check in document["checks"]:
        each = check.get("each")
        if each is None:
            verdicts.append(evaluate_one(check, files))
            continue
        for match in files.glob(each):
            verdicts.append(evaluate_one(check, files, os.path.basename(match)))
    return verdicts


# --- Loading the checks document -------------------------------------------------------------


def _safe_path(path: Any, where: str) -> str:
    """A host path the verifier may read: absolute, no ``..``, no NUL."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise CheckError(f"{where}: not an absolute path: {path!r}")
    if ".." in path.split("/"):
        raise CheckError(f"{where}: refusing '..' in {path!r}")
    return path


def _validate_check(check: Any, where: str) -> None:
    if not isinstance(check, dict):
        raise CheckError(f"{where}: not an object")
    for name in ("key", "path", "kind", "desired"):
        if not isinstance(check.get(name), str):
            raise CheckError(f"{where}.{name}: missing or not a string")
    if check["kind"] not in KINDS:
        raise CheckError(f"{where}.kind: unknown kind {check['kind']!r}")
    if check.get("absent", "missing") not in ABSENT:
        raise CheckError(f"{where}.absent: {check['absent']!r} is not one of {sorted(ABSENT)}")
    _safe_path(check["path"], f"{where}.path")
    for index, need in enumerate(check.get("needs", ())):
        _safe_path(need.get("path"), f"{where}.needs.{index}.path")
        if need.get("status") not in ABSENT:
            raise CheckError(f"{where}.needs.{index}.status: {need.get('status')!r}")
    for name in ("each",):
        if check.get(name) is not None:
            _safe_path(check[name], f"{where}.{name}")
    if check.get("owned") is not None:
        _safe_path(check["owned"].get("flags_path"), f"{where}.owned.flags_path")
    if check.get("fallback") is not None:
        _validate_check(check["fallback"], f"{where}.fallback")


def load_checks(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise CheckError(f"{path}: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_ID:
        raise CheckError(f"{path}: schema: not a {SCHEMA_ID} document")
    profile = document.get("profile")
    if not isinstance(profile, dict) or not all(
        isinstance(profile.get(name), str) for name in ("name", "digest")
    ):
        raise CheckError(f"{path}: profile: needs name and digest")
    checks = document.get("checks")
    if not isinstance(checks, list):
        raise CheckError(f"{path}: checks: not a list")
    for index, check in enumerate(checks):
        _validate_check(check, f"{path}: checks.{index}")
    if not isinstance(document.get("unchecked", []), list):
        raise CheckError(f"{path}: unchecked: not a list")
    return document


# --- Metrics ---------------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _gauge(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        text = ",".join(f'{key}="{_label(label)}"' for key, label in labels.items())
        lines.append(f"{name}{{{text}}} {value:.12g}" if text else f"{name} {value:.12g}")
    return lines


def metrics_text(document: dict[str, Any], verdicts: list[Verdict], checked_at: float) -> str:
    counts = {status: 0 for status in STATUSES}
    for verdict in verdicts:
        counts[verdict.status] += 1
    counts["unchecked"] = len(document.get("unchecked", []))
    profile = document["profile"]
    lines = [
        *_gauge(
            "quietcore_node_setting_drift",
            "1 when the node's value differs from the profile or is missing, else 0.",
            [({"key": v.key}, float(v.status in DRIFTING)) for v in verdicts],
        ),
        *_gauge(
            "quietcore_node_checks",
            "Settings of the profile by verdict at the last check (unchecked: not a file).",
            [({"status": status}, float(count)) for status, count in counts.items()],
        ),
        *_gauge(
            "quietcore_node_last_check_timestamp_seconds",
            "When the node's settings were last read, in seconds since the epoch.",
            [({}, checked_at)],
        ),
        *_gauge(
            "quietcore_node_profile_info",
            "The profile this node is judged against.",
            [({"profile": profile["name"], "digest": profile["digest"]}, 1.0)],
        ),
    ]
    return "\n".join(lines) + "\n"


# --- Serving -------------------------------------------------------------------------------


class Latest:
    """The last metrics text, shared between the checking loop and the HTTP threads."""

    def __init__(self, text: str) -> None:
        self._lock = threading.Lock()
        self._text = text

    def get(self) -> str:
        with self._lock:
            return self._text

    def set(self, text: str) -> None:
        with self._lock:
            self._text = text


def _handler(latest: Latest) -> type:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            body = latest.get().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return MetricsHandler


def check_now(document: dict[str, Any], files: HostFiles) -> tuple[str, list[Verdict]]:
    verdicts = evaluate(document, files)
    drifting = [verdict for verdict in verdicts if verdict.status in DRIFTING]
    # One line per check; the keys only at debug level, a node's log would drown in them.
    log.info("%d settings checked, %d drift or missing", len(verdicts), len(drifting))
    for verdict in drifting:
        log.debug("%s: %s (%s) %s", verdict.key, verdict.status, verdict.actual, verdict.reason)
    return metrics_text(document, verdicts, time.time()), verdicts


def serve(document: dict[str, Any], files: HostFiles, options: argparse.Namespace) -> None:
    text, _ = check_now(document, files)
    latest = Latest(text)
    server = ThreadingHTTPServer((options.address, options.port), _handler(latest))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    log.info("serving /metrics on %s:%d", options.address, server.server_address[1])
    try:
        while True:
            time.sleep(options.interval)
            latest.set(check_now(document, files)[0])
    finally:
        server.shutdown()


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", required=True, help="the node-checks JSON document")
    parser.add_argument("--host-root", default="/", help="where the host's / is mounted")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between checks")
    parser.add_argument("--port", type=int, default=9464, help="metrics port (0: any free)")
    parser.add_argument("--address", default="", help="address to listen on (default: all)")
    parser.add_argument(
        "--once", action="store_true", help="print the metrics once and exit (1 on drift)"
    )
    options = parser.parse_args(argv)
    if options.interval <= 0:
        parser.error("--interval must be positive")
    if not 0 <= options.port <= 65535:
        parser.error("--port must be 0-65535")
    if not os.path.isdir(options.host_root):
        parser.error(f"--host-root {options.host_root}: not a directory")
    return options


def main(argv: list[str]) -> int:
    options = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        document = load_checks(options.checks)
    except CheckError as error:
        print(f"qc_node_verifier: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = HostFiles(options.host_root)
    if options.once:
        text, verdicts = check_now(document, files)
        sys.stdout.write(text)
        return EXIT_DRIFT if any(v.status in DRIFTING for v in verdicts) else 0
    serve(document, files, options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
