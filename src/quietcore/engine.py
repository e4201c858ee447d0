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
from quietcore.ssh_transport import with_prompt_transport

log = logging.getLogger(__name__)

# Told each host as it finishes: its name, and how many hosts there are in all.
HostProgress = Callable[[str, int], None]


@dataclass(frozen=True)
class FanOut:
    """How many hosts at once, and how long each may take to connect and to answer."""

    parallel: int | None = None  # None: pyinfra's default (up to 20 per CPU)
    connect_timeout: int = 10
    command_timeout: int = 120  # for each read; a probe run or apply has its own

    def config(self, **extra: Any) -> Config:
        return Config(CONNECT_TIMEOUT=self.connect_timeout, PARALLEL=self.parallel or 0, **extra)


DEFAULT_FAN_OUT = FanOut()


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
    return Inventory(([(name, with_prompt_transport(data)) for name, data in hosts.items()], {}))


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
    fan_out: FanOut = DEFAULT_FAN_OUT,
    *,
    on_done: HostProgress | None = None,
    only: Collection[str] | None = None,
) -> list[HostOutcome[T]]:
    """Connect to every target's host and run ``work(state, host)`` there, hosts in parallel,
    in target order. A host that cannot be reached, or whose work raises a pyinfra, OS or
    timeout error, is reported with the reason; it never stops the others."""
    inventory = inventory_for(targets, only)
    state = State(inventory, fan_out.config())
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
            _hang_up(host)
        outcomes[host.name] = HostOutcome(host.name, value, error, time.monotonic() - started)
        if on_done is not None:
            on_done(host.name, len(hosts))

    gevent.joinall([state.pool.spawn(run_one, host) for host in hosts], raise_error=True)
    return [outcomes[host.name] for host in hosts]


def read_hosts(
    targets: Sequence[str],
    spec: ReadSpec,
    fan_out: FanOut = DEFAULT_FAN_OUT,
    *,
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
            kwargs={
                "files": spec.files,
                "commands": spec.commands,
                "_timeout": fan_out.command_timeout,
            },
            apply_failed_hosts=False,
        )
        if readings is None and _connection_lost(host):
            raise ConnectError("connection closed during the read")
        return readings

    outcomes = on_each_host(targets, read, fan_out, on_done=on_done, only=only)
    return [
        HostRead(outcome.host, outcome.value, _read_error(outcome, fan_out), outcome.elapsed_s)
        for outcome in outcomes
    ]


def _hang_up(host: Any) -> None:
    """Disconnect, and close the SSH connection too: pyinfra's disconnect leaves it open, so
    each host's session would last (and its transport thread run) until the process ends,
    whose clean-up then closes them one after the other."""
    if host.connected:
        host.disconnect()
    client = getattr(host.connector, "client", None)
    if client is not None:
        client.close()


def _connection_lost(host: Any) -> bool:
    """An SSH host whose transport died (sshd killed, network gone) rather than a command that
    failed; other connectors (@local) cannot lose their connection."""
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    return transport is not None and not transport.is_active()


def _read_error(outcome: HostOutcome[Readings | None], fan_out: FanOut) -> str | None:
    if outcome.value is not None or outcome.error:
        return outcome.error
    # pyinfra logs a timed-out command and hands back no output, like any failed command.
    if outcome.elapsed_s >= fan_out.command_timeout:
        return f"timed out: no answer within {fan_out.command_timeout} s (--command-timeout)"
    return "the read command failed on the host (run with -v for its output)"
