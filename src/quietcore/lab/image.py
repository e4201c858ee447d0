"""Build the lab's Debian disk image once and cache it (root only).

A raw disk with one MBR partition (ext4) is attached to a loop device, debootstrap fills it,
the recipe's files are written, and a real GRUB is installed on the disk from inside the
chroot (``grub-install --target=i386-pc`` + ``update-grub``), so that kernel command-line
changes made in the guest take effect when it reboots. The disk is then converted to qcow2:
``images/debian-bookworm-<recipe key>.qcow2``, next to the SSH client key authorized for root
and the guest's public host key (which lab clients pin in their known_hosts).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quietcore import console
from quietcore.lab.paths import images_dir
from quietcore.lab.recipe import MIRROR, ROOT_LABEL, Recipe
from quietcore.lab.spec import LabError
from quietcore.lab.tools import BUILD_TOOLS, require, require_root, which

log = logging.getLogger(__name__)

PARTITION_START_SECTOR = 2048  # 1 MiB: room for GRUB's core.img after the MBR
# debootstrap and the chroot (grub-install, update-grub) need the sbin directories.
_BUILD_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
}


@dataclass(frozen=True)
class Image:
    """The cached files of one recipe."""

    stem: str

    @property
    def disk(self) -> Path:
        return images_dir() / f"{self.stem}.qcow2"

    @property
    def client_key(self) -> Path:
        return images_dir() / f"{self.stem}.id_ed25519"

    @property
    def host_key(self) -> Path:
        """The guest sshd's public ed25519 host key (``ssh-ed25519 AAAA...``)."""
        return images_dir() / f"{self.stem}.host_ed25519.pub"

    @property
    def kernel(self) -> Path:
        """A copy of the guest's kernel, for the KVM probe (the lab itself boots with GRUB)."""
        return images_dir() / f"{self.stem}.vmlinuz"

    @property
    def info_file(self) -> Path:
        return images_dir() / f"{self.stem}.json"

    @property
    def build_log(self) -> Path:
        return images_dir() / f"{self.stem}.build.log"

    def ready(self) -> bool:
        files = (self.disk, self.client_key, self.host_key, self.kernel, self.info_file)
        return all(path.is_file() for path in files)

    def info(self) -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return {}
        return document


def image_for(recipe: Recipe) -> Image:
    return Image(recipe.image_stem())


def ensure_image(recipe: Recipe, *, rebuild: bool = False) -> Image:
    """The cached image of ``recipe``, built first when missing. Concurrent callers wait for
    one build (a lock file), then all use its result."""
    image = image_for(recipe)
    if image.ready() and not rebuild:
        return image
    require_root("building the lab image (loop devices, mount, chroot)")
    require(BUILD_TOOLS)
    images_dir().mkdir(parents=True, exist_ok=True)
    with _locked(images_dir() / f"{image.stem}.lock"):
        if image.ready() and not rebuild:
            return image
        try:
            _build(recipe, image)
        except LabError as problem:
            if "debootstrap" not in str(problem):
                raise
            # The mirror is the one part that fails on its own; the .debs fetched are kept.
            console.note("debootstrap failed (a download?); retrying the build once")
            _build(recipe, image)
    return image


def prune_images(keep: set[str]) -> list[str]:
    """Delete cached images (of older recipes) whose stems are not in ``keep``; return them.
    Callers keep every image a lab overlay still uses as its backing file."""
    removed = []
    for disk in sorted(images_dir().glob("debian-*.qcow2")):
        stem = disk.name.removesuffix(".qcow2")
        if stem in keep:
            continue
        for path in images_dir().glob(f"{stem}.*"):
            path.unlink(missing_ok=True)
        removed.append(stem)
    return removed


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Build:
    """One build: runs commands into the build log and undoes mounts and loop devices."""

    def __init__(self, image: Image, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self.root = workdir / "root"
        self.raw = workdir / "disk.raw"
        self.loop: str | None = None
        self.mounts: list[Path] = []

    def run(self, argv: Sequence[str], *, timeout: float = 1800) -> str:
        argv = [which(argv[0]), *argv[1:]]
        log.debug("build: %s", " ".join(argv))
        with self.image.build_log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            done = subprocess.run(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
                env={**os.environ, **_BUILD_ENV},
            )
            out.write(done.stdout)
        if done.returncode != 0:
            tail = "\n".join(done.stdout.strip().splitlines()[-15:])
            raise LabError(
                f"image build failed: {' '.join(argv)} exited {done.returncode}\n{tail}\n"
                f"(full log: {self.image.build_log})"
            )
        return done.stdout

    def chroot(self, *argv: str) -> str:
        return self.run(["chroot", str(self.root), *argv])

    def mount(self, *args: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.run(["mount", *args, str(target)])
        self.mounts.append(target)

    def attach(self) -> str:
        """Attach the raw disk to a loop device and return its first partition's device."""
        self.loop = self.run(["losetup", "--find", "--show", "--partscan", str(self.raw)]).strip()
        partition = Path(f"{self.loop}p1")
        deadline = time.monotonic() + 5
        while not partition.exists():
            if time.monotonic() > deadline:
                # No udev (containers): ask the kernel for the partition explicitly.
                self.run(["partx", "--add", self.loop])
                if not partition.exists():
                    raise LabError(f"{partition} did not appear after partx --add {self.loop}")
            time.sleep(0.1)
        return str(partition)

    def finish(self) -> None:
        """Unmount (and so flush) everything, detach the loop device; raise on failure."""
        while self.mounts:
            self.run(["umount", str(self.mounts[-1])])
            self.mounts.pop()
        if self.loop is not None:
            self.run(["losetup", "--detach", self.loop])
            self.loop = None

    def cleanup(self) -> None:
        """After a failure: undo whatever is still mounted or attached, as far as possible."""
        for target in reversed(self.mounts):
            subprocess.run(
                [which("umount"), "--lazy", str(target)], capture_output=True, check=False
            )
        self.mounts.clear()
        if self.loop is not None:
            subprocess.run(
                [which("losetup"), "--detach", self.loop], capture_output=True, check=False
            )
            self.loop = None


def _build(recipe: Recipe, image: Image) -> None:
    started = time.monotonic()
    workdir = images_dir() / f".build-{image.stem}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    image.build_log.write_text(
        f"# quietcore lab image build {datetime.now(UTC).isoformat(timespec='seconds')}\n"
    )
    console.note(f"building the lab image {image.stem} (once; log: {image.build_log})")
    build = _Build(image, workdir)
    try:
        timings = _build_disk(build, recipe, image)
        build.finish()
        console.note("converting to qcow2")
        partial = image.disk.with_suffix(".qcow2.partial")
        build.run(["qemu-img", "convert", "-O", "qcow2", str(build.raw), str(partial)])
        partial.replace(image.disk)
    except BaseException:
        build.cleanup()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - started
    info = {
        "stem": image.stem,
        "recipe_key": recipe.key(),
        "recipe": recipe.document(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        **timings,
        "disk_bytes": image.disk.stat().st_size,
    }
    image.info_file.write_text(json.dumps(info, indent=2) + "\n")
    console.note(f"lab image built in {seconds:.0f} s: {image.disk}")


def _build_disk(build: _Build, recipe: Recipe, image: Image) -> dict[str, float]:
    build.run(["truncate", "--size", f"{recipe.disk_gib}G", str(build.raw)])
    _partition(build)
    partition = build.attach()
    root_uuid = str(uuid.uuid4())
    build.run(["mkfs.ext4", "-q", "-L", ROOT_LABEL, "-U", root_uuid, partition])
    build.mount(partition, target=build.root)

    console.note(f"debootstrap {recipe.suite} + {len(recipe.packages)} packages (a few minutes)")
    started = time.monotonic()
    build.run(
        [
            which("debootstrap"),
            "--variant=minbase",
            f"--include={','.join(recipe.packages)}",
            f"--cache-dir={_deb_cache()}",
            recipe.suite,
            str(build.root),
            MIRROR,
        ]
    )
    debootstrap_seconds = time.monotonic() - started

    console.note("configuring: SSH keys, network, GRUB")
    _write_files(build.root, recipe.files)
    _install_keys(build, image)
    build.mount("-t", "tmpfs", "-o", "mode=0755,size=16m", "qc-dev", target=build.root / "dev")
    _populate_dev(build.root / "dev", partition, root_uuid)
    build.mount("-t", "proc", "proc", target=build.root / "proc")
    build.mount("-t", "sysfs", "sysfs", target=build.root / "sys")
    for command in recipe.commands:
        build.chroot(*command)
    assert build.loop is not None
    build.chroot("grub-install", "--target=i386-pc", "--modules=part_msdos ext2", build.loop)
    build.chroot("update-grub")
    _check_grub(build.root)
    kernels = sorted((build.root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LabError("the image has no kernel in /boot")
    shutil.copyfile(kernels[-1], image.kernel)
    # Give the blocks of deleted files (apt's cache) back, so the qcow2 holds only real data.
    build.run(["fstrim", str(build.root)])
    return {"debootstrap_seconds": round(debootstrap_seconds, 1)}


def _partition(build: _Build) -> None:
    layout = f"label: dos\nstart={PARTITION_START_SECTOR}, type=83, bootable\n"
    log.debug("partition table: %s", layout)
    with build.image.build_log.open("a") as out:
        done = subprocess.run(
            [which("sfdisk"), "--quiet", str(build.raw)],
            input=layout,
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise LabError(f"sfdisk failed (log: {build.image.build_log})")


def _deb_cache() -> Path:
    """Downloaded .deb files, kept so a rebuild (a new recipe) downloads only what changed."""
    path = images_dir() / "debs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_files(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        target = root / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def _install_keys(build: _Build, image: Image) -> None:
    """Authorize a fresh client key for root; keep only the ed25519 host key and publish it."""
    key = image.client_key
    key.unlink(missing_ok=True)
    Path(f"{key}.pub").unlink(missing_ok=True)
    build.run(
        [
            which("ssh-keygen"),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "quietcore-lab",
            "-f",
            str(key),
        ]
    )
    ssh_dir = build.root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(f"{key}.pub").read_text())
    authorized.chmod(0o600)
    etc_ssh = build.root / "etc" / "ssh"
    for old in etc_ssh.glob("ssh_host_*_key*"):
        if "ed25519" not in old.name:
            old.unlink()
    host_key = etc_ssh / "ssh_host_ed25519_key.pub"
    if not host_key.exists():
        raise LabError(f"openssh-server left no ed25519 host key in the image ({host_key})")
    image.host_key.write_text(" ".join(host_key.read_text().split()[:2]) + "\n")


def _populate_dev(dev: Path, partition: str, root_uuid: str) -> None:
    """A private /dev for the chroot: the usual character devices, the build's loop disk and
    partition, and the by-uuid link udev would make (without it update-grub writes
    ``root=/dev/loopNp1`` instead of ``root=UUID=...``). The host's /dev stays untouched."""
    disk = partition.removesuffix("p1")
    for node in (
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        disk,
        partition,
    ):
        info = os.stat(node)
        target = dev / Path(node).name
        os.mknod(target, info.st_mode, info.st_rdev)
    for kind, name in (("by-uuid", root_uuid), ("by-label", ROOT_LABEL)):
        (dev / "disk" / kind).mkdir(parents=True, exist_ok=True)
        (dev / "disk" / kind / name).symlink_to(f"../../{Path(partition).name}")


def _check_grub(root: Path) -> None:
    config = root / "boot" / "grub" / "grub.cfg"
    text = config.read_text() if config.exists() else ""
    if "console=ttyS0" not in text or "root=UUID=" not in text:
        raise LabError(f"update-grub wrote no usable {config} (no console=ttyS0 or root=UUID=)")
