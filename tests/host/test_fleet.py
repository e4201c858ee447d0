"""verify over a 16-host fleet (tests/fleet.py) in which four hosts fail in four ways.

Host 3's sshd is killed while it runs quietcore's read, host 6 presents a host key other than
the recorded one, host 9 refuses the client key, host 12 answers only after SLOW_ANSWER_S.
The 12 healthy hosts must be read as @local is (they share this kernel: @local runs in a
fleet namespace too, as the hosts' network sysctls are per namespace), each faulty host must
be reported with a reason that names its fault, in every report format, and the slow host must
not hold the others up beyond --command-timeout.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_cli
from tests.fleet import SLOW_ANSWER_S, Fault, Fleet, leftovers, start_fleet

pytestmark = pytest.mark.host

HOSTS = 16
FAULTS = {
    3: Fault.DIES_MID_COMMAND,
    6: Fault.HOST_KEY_CHANGED,
    9: Fault.CLIENT_KEY_REFUSED,
    12: Fault.SLOW,
}
# What the reason given for each faulty host must say (case-insensitive).
REASONS = {
    Fault.DIES_MID_COMMAND: r"connection",
    Fault.HOST_KEY_CHANGED: r"host key",
    Fault.CLIENT_KEY_REFUSED: r"authentication",
    Fault.SLOW: r"timed out",
}
COMMAND_TIMEOUT_S = 5
EXIT_UNREACHABLE = 3
# What a host's audit says that does not depend on how the host was reached.
AUDIT_FIELDS = ("status", "error", "topology", "cpus", "summary", "settings")


@pytest.fixture
def fleet(tmp_path: Path, root_only: None) -> Iterator[Fleet]:
    fleet = start_fleet(HOSTS, tmp_path, FAULTS)
    try:
        yield fleet
    finally:
        fleet.stop()
    assert leftovers() == []


@pytest.fixture
def local_audit(fleet: Fleet) -> dict[str, Any]:
    """@local's audit, read in a fleet host's namespace: /proc/sys/net is per namespace (and
    some net.core sysctls exist only in the first one), the rest is this machine's."""
    local = subprocess.run(
        [
            *("ip", "netns", "exec", fleet.hosts[0].namespace),
            *(sys.executable, "-m", "quietcore", "verify", "-p", "network-latency"),
            *("--format", "json", "@local"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert local.returncode in (0, 1), local.stderr  # 1: this machine drifts from the profile
    [host] = json.loads(local.stdout)["hosts"]
    return {field: host[field] for field in AUDIT_FIELDS}


def verify(fleet: Fleet, directory: Path, output_format: str) -> str:
    """The report verify writes on the fleet, with a command timeout the slow host misses."""
    report = directory / f"report.{output_format}"
    inventory = fleet.inventory(directory / "inventory.py")
    result = run_cli(
        *("verify", "-p", "network-latency", "--format", output_format, "-o", str(report)),
        *("--command-timeout", str(COMMAND_TIMEOUT_S), str(inventory)),
        timeout=SLOW_ANSWER_S,
    )
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    return report.read_text()


def faulty_names(fleet: Fleet) -> dict[str, Fault]:
    return {fleet.hosts[index].name: fault for index, fault in FAULTS.items()}


def _gives_reason(fault: Fault, text: str | None) -> bool:
    return text is not None and re.search(REASONS[fault], text, re.IGNORECASE) is not None


def test_each_host_has_its_own_namespace_address_and_key(fleet: Fleet) -> None:
    addresses = {host.address for host in fleet.hosts}
    assert len(addresses) == HOSTS
    scanned = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", *sorted(addresses)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = dict(line.split(" ", 1) for line in scanned.splitlines())
    assert len(set(keys.values())) == HOSTS
    changed = {
        fleet.hosts[index].address for index, f in FAULTS.items() if f is Fault.HOST_KEY_CHANGED
    }
    for host in fleet.hosts:
        assert (keys[host.address] == host.recorded_host_key) == (host.address not in changed)
        # No default route: nothing but this machine can reach the host, or be reached from it.
        routes = subprocess.run(
            ["ip", "-n", host.namespace, "-4", "route", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        own_subnet = ipaddress.ip_interface(f"{host.address}/30").network
        assert [route.split()[0] for route in routes] == [str(own_subnet)]


def test_faults_are_reported_per_host_and_healthy_hosts_read_as_local(
    fleet: Fleet, tmp_path: Path, local_audit: dict[str, Any]
) -> None:
    document = json.loads(verify(fleet, tmp_path, "json"))
    faulty = faulty_names(fleet)
    hosts = {host["host"]: host for host in document["hosts"]}
    assert list(hosts) == [host.name for host in fleet.hosts]
    misreported = {
        name: (host["status"], host["error"])
        for name, host in hosts.items()
        if name in faulty
        and not (host["status"] == "unreachable" and _gives_reason(faulty[name], host["error"]))
    }
    assert misreported == {}
    unlike_local = [
        name
        for name, host in hosts.items()
        if name not in faulty and {field: host[field] for field in AUDIT_FIELDS} != local_audit
    ]
    assert unlike_local == []
    assert document["summary"]["unreachable"] == len(FAULTS)
    # The slow host cost its command timeout, not its whole slowness.
    assert document["timing"]["wall_s"] < COMMAND_TIMEOUT_S + 10
    killed = fleet.hosts[next(i for i, f in FAULTS.items() if f is Fault.DIES_MID_COMMAND)]
    assert killed.process is not None and killed.process.poll() is not None
    assert killed.commands_run() == 1  # it died running quietcore's read, not before


class _HeadedText(HTMLParser):
    """The text of an HTML page, cut at each <h2>: heading text -> text up to the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self._heading: str | None = None
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._heading, self._in_heading = "", True

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self._in_heading = False
            self._heading = self._heading.strip()
            self.sections[self._heading] = ""

    def handle_data(self, data: str) -> None:
        if self._heading is None:
            return
        if self._in_heading:
            self._heading += data
        else:
            self.sections[self._heading] += data


def _reasons_in_html(text: str, names: Iterable[str]) -> dict[str, str]:
    parser = _HeadedText()
    parser.feed(text)
    return {
        name: next(body for heading, body in parser.sections.items() if heading.split()[0] == name)
        for name in names
    }


def _reasons_in_junit(text: str, names: Iterable[str]) -> dict[str, str]:
    """Per host (test suite), the messages of its errors."""
    suites = {
        suite.attrib["name"]: suite for suite in ElementTree.fromstring(text).iter("testsuite")
    }
    return {
        name: " ".join(error.attrib.get("message", "") for error in suites[name].iter("error"))
        for name in names
    }


def _reasons_in_table(text: str, names: Iterable[str]) -> dict[str, str]:
    """Each host's heading line in the table report is followed by its error."""
    lines = text.splitlines()
    headings = {line.split()[0]: number for number, line in enumerate(lines) if line.strip()}
    return {name: lines[headings[name] + 1] for name in names}


REPORTS: dict[str, Callable[[str, Iterable[str]], dict[str, str]]] = {
    "junit": _reasons_in_junit,
    "html": _reasons_in_html,
    "table": _reasons_in_table,
}


@pytest.mark.parametrize("output_format", list(REPORTS))
def test_each_fault_is_in_the_report_with_its_reason(
    fleet: Fleet, tmp_path: Path, output_format: str
) -> None:
    faulty = faulty_names(fleet)
    reasons = REPORTS[output_format](verify(fleet, tmp_path, output_format), faulty)
    assert {
        name: _gives_reason(faulty[name], reason) for name, reason in reasons.items()
    } == dict.fromkeys(faulty, True), reasons


def test_prometheus_counts_and_names_the_faulty_hosts(fleet: Fleet, tmp_path: Path) -> None:
    text = verify(fleet, tmp_path, "prometheus")
    samples = [
        sample for family in text_string_to_metric_families(text) for sample in family.samples
    ]
    by_status = {s.labels["status"]: s.value for s in samples if s.name == "quietcore_hosts"}
    assert by_status["unreachable"] == len(FAULTS)
    assert by_status["drift"] + by_status["ok"] == HOSTS - len(FAULTS)
    # A label value is no place for an error message; the host must be there all the same.
    labelled = {sample.labels.get("host") for sample in samples}
    assert set(faulty_names(fleet)) <= labelled


def _stderr_on_a_terminal(command: list[str]) -> str:
    """Run ``command`` with stderr on a pseudo-terminal (stdout discarded); what it showed."""
    primary, secondary = pty.openpty()
    shown = b""
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "200"},
    ) as process:
        os.close(secondary)
        # Until everything is read: EIO once the command's end closed the terminal, or (should
        # the terminal stay open elsewhere) nothing left to read after the command ended.
        while True:
            readable, _, _ = select.select([primary], [], [], 0.1)
            if readable:
                try:
                    shown += os.read(primary, 65536)
                except OSError:
                    break
            elif process.poll() is not None:
                break
    os.close(primary)
    return shown.decode(errors="replace")


def test_progress_is_shown_on_a_terminal_and_never_in_a_pipe(fleet: Fleet, tmp_path: Path) -> None:
    inventory = fleet.inventory(tmp_path / "inventory.py")
    arguments = [
        *("verify", "-p", "network-latency", "--format", "json"),
        *("--command-timeout", str(COMMAND_TIMEOUT_S), str(inventory)),
    ]
    on_terminal = _stderr_on_a_terminal([sys.executable, "-m", "quietcore", *arguments])
    # The slow host finishes last (it times out), so the count is seen climbing past the others.
    assert re.search(rf"reading hosts: (1[0-5])/{HOSTS} done", on_terminal), on_terminal
    piped = run_cli(*arguments, timeout=SLOW_ANSWER_S)
    assert piped.returncode == EXIT_UNREACHABLE
    assert "reading hosts" not in piped.stderr
    assert json.loads(piped.stdout)["summary"]["hosts"] == HOSTS
