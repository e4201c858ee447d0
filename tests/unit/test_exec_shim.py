"""The --mlock shim's environment and cache rules (its build runs in tests/host/test_exec.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quietcore.workload import mlock_shim
from quietcore.workload.launch import LaunchError, with_preload


def test_preload_goes_first_and_keeps_the_users_libraries() -> None:
    shim = Path("/cache/qc_mlock.so")
    assert with_preload({"A": "1"}, shim) == {"A": "1", "LD_PRELOAD": "/cache/qc_mlock.so"}
    assert with_preload({"LD_PRELOAD": "/usr/lib/libvma.so"}, shim)["LD_PRELOAD"] == (
        "/cache/qc_mlock.so:/usr/lib/libvma.so"
    )
    assert with_preload({"LD_PRELOAD": "  "}, shim)["LD_PRELOAD"] == "/cache/qc_mlock.so"
    with pytest.raises(LaunchError, match="cannot name a path"):
        with_preload({}, Path("/my cache/qc_mlock.so"))


def test_cache_path_depends_on_the_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    gcc, clang = mlock_shim.shim_path("gcc"), mlock_shim.shim_path("clang")
    assert gcc != clang
    assert gcc.parent.parent == tmp_path / "quietcore" / "mlock"
    assert gcc.name == "qc_mlock.so"


def test_no_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no cc, gcc or clang
    with pytest.raises(mlock_shim.ShimError, match="--mlock needs a C compiler"):
        mlock_shim.ensure_shim()


def test_a_cached_shim_others_may_write_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    library = mlock_shim.shim_path("cc")
    library.parent.mkdir(parents=True)
    library.write_bytes(b"not really a library")
    for path in (library, library.parent, library.parent.parent, tmp_path / "quietcore"):
        path.chmod(0o755)
    mlock_shim._check_trusted(library)  # private, this user's: accepted
    library.parent.parent.chmod(0o777)
    with pytest.raises(mlock_shim.ShimError, match="others may write it"):
        mlock_shim._check_trusted(library)
    library.parent.parent.chmod(0o755)
    library.chmod(0o664)
    with pytest.raises(mlock_shim.ShimError, match="others may write it"):
        mlock_shim._check_trusted(library)
