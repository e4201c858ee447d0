"""The LD_PRELOAD shim behind ``quietcore exec --mlock``, built once with the system compiler.

Built as the jitter probe is (``quietcore.probes.build``: its compiler search and flags), but
as a shared library, and cached under ``$XDG_CACHE_HOME/quietcore/mlock/<key>/`` where the key
hashes the source, compiler, flags and architecture. The cached library is loaded into a
process that is often root's, so it is used only when it and every cache directory down to it
belong to this user (or root) and nobody else may write them.
"""

from __future__ import annotations

import os
import platform
import stat
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from quietcore.lab.paths import cache_root
from quietcore.probes import build

SHIM_NAME = "qc_mlock.so"
SHARED_FLAGS = ("-shared", "-fPIC")


class ShimError(RuntimeError):
    """The shim cannot be built or trusted here."""


def shim_source() -> bytes:
    return resources.files("quietcore.workload").joinpath("c/qc_mlock.c").read_bytes()


def shim_path(compiler: str) -> Path:
    """Where the shim built by ``compiler`` lives in the cache (built or not)."""
    material = b"\0".join(
        [
            shim_source(),
            " ".join([compiler, *build.CFLAGS, *SHARED_FLAGS]).encode(),
            platform.machine().encode(),
        ]
    )
    return cache_root() / "mlock" / build.source_digest(material)[:12] / SHIM_NAME


def find_compiler() -> str:
    compiler = build.find_compiler()
    if compiler is None:
        raise ShimError(
            "--mlock needs a C compiler to build its LD_PRELOAD shim once (looked for "
            f"{', '.join(build.COMPILERS)}); install one (Debian: apt-get install gcc "
            "libc6-dev), or drop --mlock and call mlockall() in the program"
        )
    return compiler


def ensure_shim() -> Path:
    """The shim library, built now if the cache does not hold it yet."""
    compiler = find_compiler()
    library = shim_path(compiler)
    if not library.exists():
        _build(compiler, library)
    _check_trusted(library)
    return library


def _build(compiler: str, library: Path) -> None:
    library.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    # Built under a temporary name and renamed: a concurrent or interrupted build never leaves
    # a half-written library under the final name.
    with tempfile.TemporaryDirectory(dir=library.parent, prefix=".build-") as scratch:
        source = Path(scratch) / "qc_mlock.c"
        source.write_bytes(shim_source())
        output = Path(scratch) / SHIM_NAME
        argv = [*build.compile_argv(compiler, source, output, static=False), *SHARED_FLAGS]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=build.COMPILE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as problem:
            raise ShimError(f"cannot run {compiler}: {problem}") from None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
            raise ShimError(f"{compiler} could not build the --mlock shim: {first}")
        os.replace(output, library)


def _check_trusted(library: Path) -> None:
    top = cache_root()
    path = library
    euid = os.geteuid()
    while True:
        info = path.stat()
        if info.st_uid not in (euid, 0) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ShimError(
                f"not loading {library}: {path} belongs to uid {info.st_uid} or others may "
                f"write it; remove {top / 'mlock'} or set XDG_CACHE_HOME to a private directory"
            )
        if path in (top, path.parent):
            return
        path = path.parent
