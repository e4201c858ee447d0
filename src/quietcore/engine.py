"""Drive pyinfra from Python: build an inventory from targets, connect, read every host once.

This is one of the few modules that touch the outside world. It returns raw ``Readings`` per
host (or the reason a host could not be read); everything after that is pure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from pyinfra.api.config import Config
from pyinfra.api.exceptions import ConnectError, PyinfraError
from pyinfra.api.facts import get_fact
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_state

from quietcore.facts import HostBundle
from quietcore.readings import HostRead, Readings, ReadSpec

log = logging.getLogger(__name__)

HostProgress = Callable[[str], None]


class TargetError(ValueError):
    """A target that names no host (missing inventory file, empty inventory)."""


def inventory_for(targets: Sequence[str], only: Collection[str] | None = None) -> Inventory:
    """One pyinfra inventory for all targets: ``@local``, ``[user@]host``, comma lists, or
    pyinfra inventory files (``inventory/lab.py``), in the order given, without repeats.

    ``only``: keep just the hosts of these names (a host of an inventory file is reached
    with that file's data, never by its bare name)."""
    from pyinfra_cli.inventory import make_inventory_from_files

    hosts: dict[str, dict[str, Any]] = {}
    for target in targets:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise TargetError(f"inventory file {target} does not exist")
            # pyinfra executes inventory files inside a state context, as its CLI does.
            with ctx_state.use(State()):
                inventory = make_inventory_from_files(target)
            for host in inventory:
                hosts.setdefault(host.name, host.data.dict())
        else:
            for name in filter(None, target.split(",")):
                hosts.setdefault(name, {})
    if only is not None:
        hosts = {name: data for name, data in hosts.items() if name in only}
    if not hosts:
        raise TargetError("no hosts given: name @local, a host, or an inventory file")
    return Inventory((list(hosts.items()), {}))


type HostWork[T] = Callable[[State, Any], T]


@dataclass(frozen=True)
class HostOutcome[T]:
    host: str
    value: T | None
    error: str | None  # why the host could not be reached or the work failed
    elapsed_s: float


def on_each_host[T](
    targets: Sequence[str],
    work: HostWork[T],
    *,
    parallel: int | None = None,
    connect_timeout: int = 10,
    on_done: HostProgress | None = None,
    only: Collection[str] | None = None,
) -> list[HostOutcome[T]]:
    """Connect to every target's host and run ``work(state, host)`` there, hosts in parallel,
    in target order. A host that cannot be reached, or whose work raises a pyinfra, OS or
    timeout error, is reported with the reason; it never stops the others."""
    inventory = inventory_for(targets, only)
    config = Config(CONNECT_TIMEOUT=connect_timeout, PARALLEL=parallel or 0)
    state = State(inventory, config)
    hosts = list(inventory)
    outcomes: dict[str, HostOutcome[T]] = {}

    def run_one(host: Any) -> None:
        started = time.monotonic()
        value: T | None = None
        error: str | None = None
        try:
            host.connect(show_errors=False, raise_exceptions=True)
            value = work(state, host)
        except ConnectError as failure:
            error = f"unreachable: {failure}"
        except TimeoutError:
            error = "timed out"
        except (PyinfraError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        finally:
            if host.connected:
                host.disconnect()
        outcomes[host.name] = HostOutcome(host.name, value, error, time.monotonic() - started)
        if on_done is not None:
            on_done(host.name)

    gevent.joinall([state.pool.spawn(run_one, host) for host in hosts], raise_error=True)
    return [outcomes[host.name] for host in hosts]


def read_hosts(
    targets: Sequence[str],
    spec: ReadSpec,
    *,
    parallel: int | None = None,
    connect_timeout: int = 10,
    on_done: HostProgress | None = None,
    only: Collection[str] | None = None,
) -> list[HostRead]:
    """Read the one bundle fact on every target's host (see ``on_each_host``).
    ``only``: read just the hosts of these names among the targets'."""

    def read(state: State, host: Any) -> Readings | None:
        readings: Readings | None = get_fact(
            state,
            host,
            HostBundle,
            kwargs={"files": spec.files, "commands": spec.commands},
            apply_failed_hosts=False,
        )
        return readings

    outcomes = on_each_host(
        targets,
        read,
        parallel=parallel,
        connect_timeout=connect_timeout,
        on_done=on_done,
        only=only,
    )
    return [
        HostRead(
            outcome.host,
            outcome.value,
            outcome.error
            if outcome.value is not None or outcome.error
            else "the read command failed on the host (run with -v for its output)",
            outcome.elapsed_s,
        )
        for outcome in outcomes
    ]
