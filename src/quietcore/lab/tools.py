"""Host prerequisites of the lab: programs (with the Debian package that has each) and root."""

from __future__ import annotations

import os
import shutil

from quietcore.lab.spec import LabError

# program -> Debian package that provides it
PACKAGE_OF = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "sfdisk": "fdisk",
    "mkfs.ext4": "e2fsprogs",
    "losetup": "mount",
    "partx": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "fstrim": "util-linux",
    "chroot": "coreutils",
    "truncate": "coreutils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

BUILD_TOOLS = (
    "debootstrap",
    "qemu-img",
    "sfdisk",
    "mkfs.ext4",
    "losetup",
    "partx",
    "mount",
    "fstrim",
    "chroot",
    "ssh-keygen",
)
RUN_TOOLS = ("qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen")


def which(program: str) -> str:
    """The path of ``program`` (also looked up in the sbin directories a non-login root shell
    may lack), or a LabError naming the package to install."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    found = shutil.which(program, path=search)
    if found is None:
        package = PACKAGE_OF.get(program, program)
        raise LabError(f"{program} is not installed: apt-get install {package}")
    return found


def require(programs: tuple[str, ...]) -> None:
    missing = []
    for program in programs:
        try:
            which(program)
        except LabError:
            missing.append(program)
    if missing:
        packages = sorted({PACKAGE_OF.get(program, program) for program in missing})
        raise LabError(f"missing {', '.join(missing)}: apt-get install {' '.join(packages)}")


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{why} needs root (run as root or with sudo)")
