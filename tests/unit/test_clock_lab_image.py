"""The lab image's time source (pure): chrony's only server is a free-running chronyd on
loopback that never steers the clock, so chrony synchronises in a lab with no route out."""

from __future__ import annotations

from quietcore.lab.recipe import (
    CHROOT_COMMANDS,
    FILES,
    NTP_SERVER_CONF,
    NTP_SERVER_PORT,
    NTP_SERVER_SERVICE,
    NTP_SERVER_UNIT,
)


def _directives(text: str) -> dict[str, str]:
    return {
        line.split()[0]: " ".join(line.split()[1:])
        for line in text.splitlines()
        if line and not line.startswith(("#", "["))
    }


def test_the_server_serves_loopback_only_and_never_steers_the_clock() -> None:
    server = _directives(NTP_SERVER_CONF)
    assert server["local"] == "stratum 8"
    assert (server["allow"], server["bindaddress"]) == ("127.0.0.1", "127.0.0.1")
    assert server["port"] == str(NTP_SERVER_PORT)
    # No command socket of its own: chronyc must reach the system chronyd, or nothing.
    assert (server["cmdport"], server["bindcmdaddress"]) == ("0", "/")
    assert server["pidfile"] != "/run/chrony/chronyd.pid"
    start = _directives(NTP_SERVER_SERVICE)["ExecStart=/usr/sbin/chronyd"].split()
    assert "-x" in start
    assert start[-2:] == ["-f", "/etc/chrony/qc-ntp-server.conf"]
    assert FILES["/etc/chrony/qc-ntp-server.conf"] == NTP_SERVER_CONF
    assert ("systemctl", "enable", NTP_SERVER_UNIT) in CHROOT_COMMANDS


def test_chrony_takes_only_that_server() -> None:
    source = FILES["/etc/chrony/sources.d/qc-lab.sources"].split()
    assert source[:4] == ["server", "127.0.0.1", "port", str(NTP_SERVER_PORT)]
    assert "iburst" in source
    assert ("sed", "-i", "s/^pool /#pool /", "/etc/chrony/chrony.conf") in CHROOT_COMMANDS
