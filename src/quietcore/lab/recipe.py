"""What goes into the lab image: packages, configuration files, commands. Pure.

The cache key of an image is the sha256 of this recipe, so changing a package, a file or
``RECIPE_VERSION`` builds a new image next to the old one instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

RECIPE_VERSION = 1
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ROOT_LABEL = "qc-root"
DISK_SIZE_GIB = 4
HOSTNAME = "quietcore-lab"
# The management NIC (user-mode network, SSH) and the data NIC (tap, multi-queue) are told
# apart by MAC address, whatever names udev gives them.
MGMT_MAC = "52:54:00:51:c0:01"
DATA_MAC = "52:54:00:51:c0:02"
# The kernel-bypass NIC (bound to vfio-pci by tests): no network file, networkd leaves it alone.
BYPASS_MAC = "52:54:00:51:c0:03"

# minbase + what the lab and later issues need; debootstrap follows Depends only, so udev,
# kmod, dbus and procps are named.
PACKAGES = (
    "linux-image-amd64",
    "grub-pc",
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "procps",
    "openssh-server",
    "irqbalance",
    "rt-tests",
    "python3",
    "ethtool",
    "iproute2",
    "chrony",
)

GRUB_DEFAULT = """\
# quietcore lab: boot at once, GRUB and the kernel on the serial console (logged by qemu).
# Command-line changes belong in /etc/default/grub.d/*.cfg, then update-grub and reboot.
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0,115200"
GRUB_CMDLINE_LINUX=""
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_SUBMENU=y
"""

SSHD_CONFIG = """\
# quietcore lab: root by key only, no passwords, one pinned host key.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

MGMT_NETWORK = f"""\
[Match]
MACAddress={MGMT_MAC}

[Network]
DHCP=ipv4
IPv6AcceptRA=no
LinkLocalAddressing=no
"""

# Up, without addresses: the NIC the profiles tune (queues, coalescing, IRQ affinity).
DATA_NETWORK = f"""\
[Match]
MACAddress={DATA_MAC}

[Link]
RequiredForOnline=no

[Network]
LinkLocalAddressing=no
IPv6AcceptRA=no
ConfigureWithoutCarrier=yes
"""

# The lab has no route out, so chrony's pool never answers and chrony never synchronises. A
# second chronyd serves NTP on loopback from the guest's own free-running clock (``local``:
# always a reference; ``-x``: it never steers the clock), and the system chronyd takes it as its
# only source: a real NTP exchange, so the clock checks see chrony synchronised on the lab.
NTP_SERVER_PORT = 11123
NTP_SERVER_UNIT = "qc-ntp-server.service"
NTP_SERVER_CONF = f"""\
# quietcore lab: a free-running NTP server on loopback, the system chronyd's only source.
local stratum 8
allow 127.0.0.1
bindaddress 127.0.0.1
port {NTP_SERVER_PORT}
# No command access at all (UDP port or Unix socket): chronyc talks to the system chronyd only.
cmdport 0
bindcmdaddress /
pidfile /run/qc-ntp-server/chronyd.pid
"""
NTP_SERVER_SERVICE = """\
[Unit]
Description=quietcore lab: free-running NTP server on loopback for chrony
Before=chrony.service

[Service]
RuntimeDirectory=qc-ntp-server
ExecStart=/usr/sbin/chronyd -d -x -u root -f /etc/chrony/qc-ntp-server.conf

[Install]
WantedBy=multi-user.target
"""
# Short polls (1/16 s to 1/4 s) so chrony synchronises within seconds of boot or a restart.
CHRONY_SOURCE = f"server 127.0.0.1 port {NTP_SERVER_PORT} iburst minpoll -4 maxpoll -2\n"

FILES: dict[str, str] = {
    "/etc/default/grub": GRUB_DEFAULT,
    "/etc/ssh/sshd_config.d/quietcore.conf": SSHD_CONFIG,
    "/etc/systemd/network/10-mgmt.network": MGMT_NETWORK,
    "/etc/systemd/network/20-data.network": DATA_NETWORK,
    "/etc/hostname": f"{HOSTNAME}\n",
    "/etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n",
    "/etc/fstab": f"LABEL={ROOT_LABEL} / ext4 errors=remount-ro 0 1\n",
    "/etc/chrony/qc-ntp-server.conf": NTP_SERVER_CONF,
    f"/etc/systemd/system/{NTP_SERVER_UNIT}": NTP_SERVER_SERVICE,
    "/etc/chrony/sources.d/qc-lab.sources": CHRONY_SOURCE,
}

# Run inside the chroot after the files are written (argv lists, no shell).
CHROOT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("systemctl", "enable", "systemd-networkd.service"),
    # chrony keeps Debian's configuration except the unreachable pool (see CHRONY_SOURCE).
    ("sed", "-i", "s/^pool /#pool /", "/etc/chrony/chrony.conf"),
    ("systemctl", "enable", NTP_SERVER_UNIT),
    # Nothing in the lab should wake up on its own and take the apt lock or CPU time.
    ("systemctl", "mask", "apt-daily.timer", "apt-daily-upgrade.timer"),
    ("passwd", "--lock", "root"),
    ("apt-get", "clean"),
)


@dataclass(frozen=True)
class Recipe:
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    files: dict[str, str] = field(default_factory=lambda: dict(FILES))
    commands: tuple[tuple[str, ...], ...] = CHROOT_COMMANDS
    disk_gib: int = DISK_SIZE_GIB
    version: int = RECIPE_VERSION

    def document(self) -> dict[str, object]:
        return {
            "version": self.version,
            "suite": self.suite,
            "packages": sorted(self.packages),
            "files": dict(sorted(self.files.items())),
            "commands": [list(command) for command in self.commands],
            "disk_gib": self.disk_gib,
        }

    def key(self) -> str:
        """A short, stable digest of everything that shapes the image."""
        canonical = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def image_stem(self) -> str:
        return f"debian-{self.suite}-{self.key()}"
