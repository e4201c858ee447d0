"""How a Kubernetes node judges a setting by reading its own /proc and /sys.

The in-cluster verifier (``quietcore/k8s/target/qc_node_verifier.py``) runs with only those two
mounted read-only. Each knob family says, in ``KnobFamily.node_check``, which file holds a
setting's state and how its text compares (the same normalisation as the family's ``observe``
and ``matches``), or why a node cannot judge it from files. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ITEM = "{item}"  # in a key or path of a check with ``each``: one match of the ``each`` glob
NOT_MOUNTED = "the verifier sees only /proc and /sys; `quietcore verify` reads it over SSH"

CheckKind = Literal[
    "exact",  # the file's text, whitespace collapsed, equals desired (or one of ``accept``)
    "cpulist",  # a kernel CPU list, equal as a set to the desired list
    "cpulist_subset",  # a kernel CPU list, a subset of the desired list
    "cpumask",  # a hex CPU mask, equal as a set to the desired list
    "bracketed",  # the ``[selected]`` word of a sysfs mode list
    "cmdline_arg",  # the last argument of that name in the kernel command line
    "meminfo_kib",  # a ``Label: N kB`` line, equal in bytes to a desired size (``1G``)
    "all_equal",  # every file the glob path matches (minus ``exclude``) equals desired
    "exists",  # the glob path matches at least one file
]
AbsentStatus = Literal["missing", "unsupported", "drift"]
ArgumentValue = Literal["text", "cpulist", "size", "isolcpus"]


@dataclass(frozen=True)
class Need:
    """A path (or glob) that must exist for the check to make sense; else ``status``."""

    path: str
    status: AbsentStatus
    reason: str


@dataclass(frozen=True)
class KernelOwned:
    """How to tell an IRQ the kernel owns (``immovable``, not drift): its debugfs flags when
    readable, else the numbers known to be fixed."""

    flags_path: str
    flags: Mapping[str, str]
    fixed: Mapping[str, str]


@dataclass(frozen=True)
class NodeCheck:
    key: str
    path: str
    kind: CheckKind
    desired: str
    absent: AbsentStatus = "missing"
    absent_reason: str = ""
    accept: tuple[str, ...] = ()  # more actual values that count as ok
    needs: tuple[Need, ...] = ()
    fallback: NodeCheck | None = None  # tried when ``path`` does not exist
    each: str | None = None  # a glob: one verdict per match, its file name fills ``{item}``
    exclude: tuple[str, ...] = ()  # for all_equal: matches that are not judged
    argument: ArgumentValue = "text"  # for cmdline_arg: how the argument's value compares
    label: str = ""  # for meminfo_kib
    owned: KernelOwned | None = None
    # An empty file counts as absent: the file exists but the kernel refused the read.
    empty_is_absent: bool = False


@dataclass(frozen=True)
class Unchecked:
    key: str
    reason: str
