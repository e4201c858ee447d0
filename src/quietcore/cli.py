"""The ``quietcore`` command line."""

# Before anything else, and before anything opens a socket or a thread: see quietcore.startup.
from quietcore import startup

startup.prepare()

import gc  # noqa: E402
import logging  # noqa: E402

import click  # noqa: E402

from quietcore import __version__, lazy  # noqa: E402

# Each command's module loads only when that command runs (see quietcore.lazy).
COMMANDS = {
    "verify": "quietcore.verify_command:verify",
    "baseline": "quietcore.baseline.commands:baseline",
    "topology": "quietcore.inspect_commands:topology",
    "profiles": "quietcore.inspect_commands:profiles",
    "plan": "quietcore.converge.commands:plan",
    "apply": "quietcore.converge.commands:apply",
    "rollback": "quietcore.converge.commands:rollback",
    "history": "quietcore.converge.commands:history",
    "jitter": "quietcore.probes.commands:jitter",
    "report": "quietcore.report.commands:report",
    "lab": "quietcore.lab.cli:lab",
    "k8s": "quietcore.k8s.commands:k8s",
    "export": "quietcore.export.commands:export",
    "container-args": "quietcore.container_args_command:container_args",
    "exec": "quietcore.workload.exec_command:exec_command",
}


class LazyCommands(click.Group):
    """A group whose commands are named here and imported when one is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = lazy.load(COMMANDS[cmd_name])
        startup.imports_done()
        return command


@click.group(
    cls=LazyCommands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="quietcore")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: pyinfra's too).")
def main(verbose: int) -> None:
    """Make Linux hosts quiet enough for latency-critical work.

    A profile (YAML) declares CPU isolation, IRQ affinity, hugepages, NUMA, memory, network,
    kernel and container settings. quietcore resolves it against each host's real topology,
    plans and applies it over SSH (snapshot first, journal of every change, exact rollback)
    and reads every declared setting back from the running kernel.

    \b
    Start here:
      quietcore profiles list                       the built-in profiles
      quietcore topology @local                     CPUs, NUMA nodes, NICs of a host
      quietcore profiles show trading --resolved-for @local
                                                    the concrete settings for that host
      quietcore verify --profile network-latency @local
                                                    declared vs actual, exit 1 on drift
      quietcore plan --profile trading HOST         what apply would change, touching nothing
      quietcore apply --profile trading --reboot if-needed HOST
      quietcore rollback HOST                       back to the snapshot before quietcore
      quietcore history HOST                        the journal: who changed what, when
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    if verbose < 2:
        # Each failed host is reported once, by quietcore, with its reason; pyinfra's own error
        # line repeats it with the whole command (every file a read names).
        logging.getLogger("pyinfra").setLevel(logging.ERROR if verbose else logging.CRITICAL)
        # A rebooting host refuses SSH banners for a while: expected, not worth a traceback.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def run() -> None:
    """The ``quietcore`` program: ``main``, then an exit whose last garbage collection skips
    every object made so far (~40 ms less; they are freed as usual)."""
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    run()
