"""Bring labs up and down, reboot them: the steps behind ``quietcore lab``.

Every lab has a lock file (``labs/<name>.lock``), so two commands never start or tear down
the same lab at once. ``up`` never reuses anything of a lab whose qemu is gone: a dead pid
means a fresh overlay, new keys, a new port.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from quietcore import console
from quietcore.lab import vm
from quietcore.lab.image import Image, ensure_image, prune_images
from quietcore.lab.inventory import host_entry, known_hosts_line, render_inventory
from quietcore.lab.paths import cache_root, lab_dir, labs_dir
from quietcore.lab.recipe import Recipe
from quietcore.lab.spec import Accel, LabError, LabSpec
from quietcore.lab.ssh import Guest
from quietcore.lab.state import LabState
from quietcore.lab.tools import RUN_TOOLS, require, require_root, which

log = logging.getLogger(__name__)

AccelChoice = Literal["auto", "kvm", "tcg"]
PORT_ATTEMPTS = 5


@contextlib.contextmanager
def lab_lock(name: str) -> Iterator[None]:
    labs_dir().mkdir(parents=True, exist_ok=True)
    with (labs_dir() / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def guest(lab: LabState) -> Guest:
    return Guest(lab.ssh_port, lab.client_key, lab.known_hosts)


# --- accelerator ------------------------------------------------------------------------------


def _host_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def choose_accel(requested: AccelChoice, image: Image) -> tuple[Accel, str]:
    """KVM when it runs the lab kernel here, else TCG. The probe's verdict is cached per host
    boot and image, so only the first ``lab up`` after a boot pays for it."""
    if requested != "auto":
        return requested, "requested"
    verdicts = cache_root() / "accel.json"
    verdicts.parent.mkdir(parents=True, exist_ok=True)
    key = f"{_host_boot_id()}:{image.stem}:{which(vm.QEMU)}"
    try:
        cached = json.loads(verdicts.read_text())
        if cached.get("key") == key:
            return ("kvm" if cached["kvm"] else "tcg"), str(cached["reason"])
    except (OSError, ValueError, KeyError):
        pass
    usable, reason = vm.kvm_usable(image.kernel)
    verdicts.write_text(json.dumps({"key": key, "kvm": usable, "reason": reason}) + "\n")
    return ("kvm" if usable else "tcg"), reason


# --- up ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpResult:
    lab: LabState
    reused: bool  # an identical lab was already running


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port


def _ports_in_use() -> set[int]:
    from quietcore.lab.state import lab_names

    labs = (LabState.load(name) for name in lab_names())
    return {lab.ssh_port for lab in labs if lab is not None and lab.pid is not None}


def _clear(name: str) -> None:
    """End a lab's qemu if one runs, and delete every file of the lab."""
    directory = lab_dir(name)
    vm.stop(directory / "qemu.pid")
    shutil.rmtree(directory, ignore_errors=True)


def _prune(image: Image) -> None:
    """Drop images of older recipes that no lab overlay is backed by."""
    from quietcore.lab.state import lab_names

    in_use = {lab.image for lab in map(LabState.load, lab_names()) if lab is not None}
    for stem in prune_images(in_use | {image.stem}):
        console.note(f"removed the cached image of an older recipe: {stem}")


def _tap_busy(spec: LabSpec) -> bool:
    return Path("/sys/class/net", spec.tap).exists()


def up(spec: LabSpec, *, accel: AccelChoice = "auto", timeout: float | None = None) -> UpResult:
    require(RUN_TOOLS)
    require_root("lab up (the data NIC is a tap device)")
    with lab_lock(spec.name):
        existing = LabState.load(spec.name)
        if existing is not None and existing.pid is not None:
            if existing.spec != spec:
                raise LabError(
                    f"lab {spec.name} is running as {existing.spec.describe()}; "
                    f"`quietcore lab down {spec.name}` first"
                )
            if existing.status == "up" and guest(existing).boot_id() is not None:
                return UpResult(existing, reused=True)
            console.note(f"lab {spec.name} is running but does not answer: replacing it")
        elif lab_dir(spec.name).exists():
            console.note(f"lab {spec.name}: clearing what a stopped or killed run left behind")
        _clear(spec.name)
        if _tap_busy(spec):
            raise LabError(
                f"tap device {spec.tap} exists but no lab {spec.name} runs: another program "
                f"owns it (`ip link delete {spec.tap}` if it is left over)"
            )
        image = ensure_image(Recipe())
        _prune(image)
        chosen, reason = choose_accel(accel, image)
        console.note(f"accelerator: {chosen} ({reason})")
        return UpResult(_boot(spec, image, chosen, timeout), reused=False)


def _prepare(spec: LabSpec, image: Image, accel: Accel) -> LabState:
    lab = LabState(spec=spec, accel=accel, ssh_port=0, image=image.stem)
    lab.directory.mkdir(parents=True, exist_ok=True)
    key = os.open(lab.client_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(key, "wb") as out:
        out.write(image.client_key.read_bytes())
    subprocess.run(
        [
            which("qemu-img"),
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(image.disk.resolve()),
            str(lab.overlay),
        ],
        check=True,
        capture_output=True,
    )
    return lab


def _launch(lab: LabState) -> vm.Launch:
    return vm.Launch(
        accel=lab.accel,
        disk=lab.overlay,
        ssh_port=lab.ssh_port,
        pidfile=lab.pidfile,
        console_log=lab.console_log,
    )


def _start(lab: LabState, image: Image) -> None:
    """Start qemu on a free loopback port (another one if qemu finds it taken)."""
    taken = _ports_in_use()
    for attempt in range(PORT_ATTEMPTS):
        lab.ssh_port = _free_port(taken)
        lab.known_hosts.write_text(known_hosts_line(lab.ssh_port, image.host_key.read_text()))
        lab.save()
        try:
            vm.start(lab.spec, _launch(lab))
            return
        except vm.QemuStartError as problem:
            if not problem.port_busy or attempt == PORT_ATTEMPTS - 1:
                raise LabError(f"qemu did not start: {problem}") from None
            taken.add(lab.ssh_port)
            console.note(f"port {lab.ssh_port} was taken meanwhile; trying another")


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM during a boot: unwind (ending qemu on the way), exit as killed by it."""
    raise SystemExit(128 + signum)


def default_timeout(accel: Accel, spec: LabSpec) -> float:
    """Seconds to wait for SSH: generous under TCG (emulated CPUs share the host's)."""
    return 180.0 if accel == "kvm" else 300.0 + 30.0 * spec.cpus


def _boot(spec: LabSpec, image: Image, accel: Accel, timeout: float | None) -> LabState:
    try:
        lab = _prepare(spec, image, accel)
    except (OSError, subprocess.CalledProcessError) as problem:
        _clear(spec.name)
        raise LabError(f"lab {spec.name}: could not create its overlay: {problem}") from None
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _start(lab, image)
        console.note(
            f"lab {spec.name} booting: {spec.describe()}, {accel}, "
            f"SSH on 127.0.0.1:{lab.ssh_port}, console log {lab.console_log}"
        )
        wait = timeout if timeout is not None else default_timeout(accel, spec)
        guest(lab).wait_for_boot(wait, check=lambda: _check_booting(lab))
    except BaseException as failure:
        tail = _console_tail(lab)
        kept = _keep_console(lab)
        _clear(spec.name)
        if isinstance(failure, LabError):
            raise LabError(f"lab {spec.name} did not come up: {failure}{tail}{kept}") from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    lab.boot_seconds = round(time.monotonic() - started, 1)
    lab.status = "up"
    lab.save()
    write_inventory(lab)
    return lab


# Serial console lines after which the guest will never answer SSH.
_FATAL_CONSOLE = ("Kernel panic", "Dropping to a shell", "Give root password for maintenance")


def _check_booting(lab: LabState) -> None:
    if lab.pid is None:
        raise LabError("qemu exited while the guest was booting")
    try:
        text = lab.console_log.read_text(errors="replace")
    except OSError:
        return
    fatal = next((marker for marker in _FATAL_CONSOLE if marker in text), None)
    if fatal is not None:
        raise LabError(f"the guest's console says {fatal!r}")


def _keep_console(lab: LabState) -> str:
    """Save a failed boot's console log next to the lab directories (it is removed)."""
    if not lab.console_log.exists():
        return ""
    kept = labs_dir() / f"{lab.spec.name}.failed-console.log"
    shutil.copyfile(lab.console_log, kept)
    return f"\n(full console log: {kept})"


def _console_tail(lab: LabState, lines: int = 15) -> str:
    try:
        text = lab.console_log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    if not text:
        return "\n(the serial console stayed empty)"
    return "\nlast lines of the serial console:\n" + "\n".join(text[-lines:])


def write_inventory(lab: LabState) -> Path:
    entry = host_entry(lab.spec.host, lab.ssh_port, lab.client_key, lab.known_hosts)
    lab.inventory.write_text(render_inventory([entry]))
    return lab.inventory


# --- down, reboot -----------------------------------------------------------------------------


def down(name: str) -> bool:
    """Stop the lab and delete its overlay and state. True if a qemu process was ended."""
    with lab_lock(name):
        directory = lab_dir(name)
        stopped = vm.stop(directory / "qemu.pid")
        shutil.rmtree(directory, ignore_errors=True)
    (labs_dir() / f"{name}.lock").unlink(missing_ok=True)
    return stopped


def running(name: str) -> LabState:
    lab = LabState.load(name)
    if lab is None:
        raise LabError(f"no lab {name}: start it with `quietcore lab up --name {name}`")
    if lab.pid is None:
        raise LabError(f"lab {name} is not running (its qemu is gone): `quietcore lab up`")
    return lab


def _check_alive(lab: LabState) -> None:
    if lab.pid is None:
        raise LabError(f"lab {lab.spec.name}: qemu exited during the reboot")


def reboot(name: str, timeout: float | None = None) -> float:
    """Reboot the guest and wait until SSH answers with a new boot id; return the seconds."""
    lab = running(name)
    connection = guest(lab)
    before = connection.boot_id()
    if before is None:
        raise LabError(f"lab {name} does not answer SSH")
    started = time.monotonic()
    with contextlib.suppress(subprocess.TimeoutExpired):
        # The connection may drop before ssh reports success: its exit status means nothing.
        connection.run(["systemctl", "reboot"], timeout=30)
    wait = timeout if timeout is not None else default_timeout(lab.accel, lab.spec)
    connection.wait_for_boot(wait, previous=before, check=lambda: _check_alive(lab))
    return time.monotonic() - started
