"""Drive pyinfra from Python: build an inventory from targets, connect, read every host once.

This is one of the few modules that touch the outside world. It returns raw ``Readings`` per
host (or the reason a host could not be read); everything after that is pure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
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


def read_hosts(
    targets: Sequence[str],
    spec: ReadSpec,
    *,
    parallel: int | None = None,
    connect_timeout: int = 10,
    on_done: HostProgress | None = None,
    only: Collection[str] | None = None,
) -> list[HostRead]:
    """Connect to every target and run the one bundle fact there, hosts in parallel.

    A host that cannot be reached or read is reported with its reason; it never stops the
    others. ``only``: read just the hosts of these names among the targets'.
    """
    inventory = inventory_for(targets, only)
    config = Config(CONNECT_TIMEOUT=connect_timeout, PARALLEL=parallel or 0)
    state = State(inventory, config)
    hosts = list(inventory)
    results: dict[str, HostRead] = {}

    def read_one(host: Any) -> None:
        started = time.monotonic()
        readings: Readings | None = None
        error: str | None = None
        try:
            host.connect(show_errors=False, raise_exceptions=True)
            readings = get_fact(
                state,
                host,
                HostBundle,
                kwargs={"files": spec.files, "commands": spec.commands},
                apply_failed_hosts=False,
            )
            if readings is None:
                error = "the read command failed on the host (run with -v for its output)"
        except ConnectError as failure:
            error = f"unreachable: {failure}"
        except (PyinfraError, OSError, TimeoutError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        finally:
            if host.connected:
                host.disconnect()
        results[host.name] = HostRead(host.name, readings, error, time.monotonic() - started)
        if on_done is not None:
            on_done(host.name)

    gevent.joinall([state.pool.spawn(read_one, host) for host in hosts], raise_error=True)
    return [results[host.name] for host in hosts]
