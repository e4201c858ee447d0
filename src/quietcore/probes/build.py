"""The probe programs as shipped to a host, and the C ones compiled on the controller.

The C sources are shipped as one self-contained file each (the shared header pasted in), so a
host that has to compile them itself needs a single upload. A controller build is static when
the C library allows it, so the binary runs on any host of the same architecture; it is cached
under ``$XDG_CACHE_HOME/quietcore/probe/<key>/`` and built once per source, flags and arch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import struct
import subprocess
import tempfile
from importlib import resources
from pathlib import Path, PurePath

from quietcore.lab.paths import cache_root

log = logging.getLogger(__name__)

COMPILERS = ("cc", "gcc", "clang")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")
COMPILE_TIMEOUT_S = 120
# A local header of the C sources: `#include "qc_common.h"` on a line of its own.
_LOCAL_INCLUDE = re.compile(rb'^#include "([a-z_]+\.h)"\n', re.MULTILINE)


def _package_file(relative: str) -> bytes:
    return resources.files("quietcore.probes").joinpath(relative).read_bytes()


def _c_program(name: str) -> bytes:
    """``c/<name>`` with each local header pasted in place of its ``#include``."""
    return _LOCAL_INCLUDE.sub(
        lambda include: _package_file("c/" + include[1].decode()), _package_file("c/" + name)
    )


def probe_source() -> bytes:
    return _c_program("qc_probe.c")


def inject_source() -> bytes:
    return _c_program("qc_inject.c")


def python_probe_source() -> bytes:
    return _package_file("target/qc_probe.py")


def source_digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


def compile_argv(
    compiler: str, source: str | PurePath, output: str | PurePath, static: bool
) -> list[str]:
    """The command that compiles one shipped C source, on the controller or on a host."""
    return [compiler, *CFLAGS, *(["-static"] if static else []), "-o", str(output), str(source)]


def find_compiler() -> str | None:
    for name in COMPILERS:
        if shutil.which(name) is not None:
            return name
    return None


def is_static(binary: Path) -> bool:
    """True when the ELF file asks for no program interpreter (no dynamic loader)."""
    with binary.open("rb") as file:
        header = file.read(64)
        if header[:4] != b"\x7fELF":
            raise ValueError(f"{binary} is not an ELF file")
        wide, order = header[4] == 2, "<" if header[5] == 1 else ">"
        # e_phoff, e_phentsize, e_phnum: where the program headers are and how many.
        if wide:
            (phoff,) = struct.unpack_from(order + "Q", header, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 54)
        else:
            (phoff,) = struct.unpack_from(order + "I", header, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 42)
        file.seek(phoff)
        table = file.read(phentsize * phnum)
    pt_interp = 3
    return all(
        struct.unpack_from(order + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def _cache_key(source: bytes, compiler: str, arch: str) -> str:
    material = b"\0".join([source, " ".join([compiler, *CFLAGS]).encode(), arch.encode()])
    return source_digest(material)[:12]


def _compile(compiler: str, source: Path, output: Path) -> bool:
    """Static first; dynamic when the C library has no static version (glibc-static missing)."""
    for static in (True, False):
        argv = compile_argv(compiler, source, output, static)
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            log.debug("cannot run %s: %s", compiler, error)
            return False
        if done.returncode == 0:
            return True
        reason = done.stderr.strip().splitlines()[:1] or [f"exit {done.returncode}"]
        if static:
            log.info(
                "static build of %s failed (%s); building it dynamically", output.name, reason[0]
            )
        else:
            log.debug("cannot compile %s: %s", output.name, done.stderr.strip())
    return False


def compile_on_controller(source: bytes, name: str, arch: str) -> Path | None:
    """The binary of ``source`` built here for ``arch``, from the cache when it is there;
    None when this machine cannot build it (another architecture, no compiler, failure)."""
    if arch != platform.machine():
        log.debug(
            "not building %s here: the host is %s, this machine %s", name, arch, platform.machine()
        )
        return None
    compiler = find_compiler()
    if compiler is None:
        log.debug("not building %s here: no C compiler (%s)", name, ", ".join(COMPILERS))
        return None
    directory = cache_root() / "probe" / _cache_key(source, compiler, arch)
    binary = directory / name
    if binary.exists():
        return binary
    try:
        built = _build_into(directory, compiler, source, name)
    except OSError as error:
        log.debug("not building %s here: %s", name, error)
        return None
    return binary if built else None


def _build_into(directory: Path, compiler: str, source: bytes, name: str) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    # Built under temporary names and renamed: a concurrent or interrupted build never leaves
    # a half-written binary under the final name.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as scratch:
        scratch_source = Path(scratch) / f"{name}.c"
        scratch_source.write_bytes(source)
        scratch_binary = Path(scratch) / name
        if not _compile(compiler, scratch_source, scratch_binary):
            return False
        os.replace(scratch_binary, directory / name)
    log.debug("built %s in %s", name, directory)
    return True
