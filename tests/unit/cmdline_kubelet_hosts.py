"""Captures for the apply tests of the cmdline and kubelet families.

``apply-vm-default`` and ``apply-vm-kubelet-dropins`` are real bundle outputs of the 2-CPU
Firecracker VM (Debian 12, no GRUB, no grubby, no kubelet) reading ``TOPOLOGY_READS`` and
what the cmdline and kubelet families read for the built-in ``trading`` profile, whose new
reads (the boot-loader tools, the kubelet's state, its drop-in directory) older captures lack.
Re-capture, as root on a VM without a kubelet, with
``python -m tests.unit.cmdline_kubelet_hosts``: the second capture creates ``KUBELET_FILES``
and quietcore's own rendered drop-in, starts a stand-in process named ``kubelet`` with
``--config-dir``, captures, then stops it and removes exactly what it created.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bundles import BUNDLES, capture_local
from tests.unit.platform_knob_hosts import TUNED_FILES, _files_created

from quietcore.facts import merge_reads
from quietcore.knobs.cmdline import CmdlineKnob
from quietcore.knobs.kubelet import DROP_IN, DROP_IN_DIR, KubeletKnob
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import resolve
from quietcore.readings import Readings
from quietcore.topology import TOPOLOGY_READS, parse_topology

FAMILIES = (CmdlineKnob(), KubeletKnob())
KUBEADM_CONFIG = "/var/lib/kubelet/config.yaml"
# A site drop-in sorting before quietcore's (it overrides the configuration file, quietcore's
# overrides it), and a file the kubelet ignores because it is not named *.conf.
KUBELET_FILES = {
    KUBEADM_CONFIG: TUNED_FILES[KUBEADM_CONFIG],
    f"{DROP_IN_DIR}/10-site.conf": (
        "apiVersion: kubelet.config.k8s.io/v1beta1\n"
        "kind: KubeletConfiguration\n"
        "topologyManagerPolicy: restricted\n"
        "systemReserved:\n"
        "  cpu: 250m\n"
    ),
    f"{DROP_IN_DIR}/README": "cpuManagerPolicy: none\n",
}
# A shell script's process is named after the script: a process the bundle sees as "kubelet"
# (it must not exec, which would rename it). It ends within a second of SIGTERM.
STAND_IN = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 1; done\n"


def _capture(name: str) -> None:
    profile = load_profile("trading").profile
    spec = merge_reads([TOPOLOGY_READS, *(family.reads(profile) for family in FAMILIES)])
    (BUNDLES / f"{name}.txt").write_text(capture_local(spec))


def rendered_drop_in(readings: Readings) -> str:
    """quietcore's kubelet drop-in for ``trading`` on the host of ``readings``."""
    knob = KubeletKnob()
    topology = parse_topology(readings)
    settings = [s for s in resolve(load_profile("trading"), topology) if s.family == knob.name]
    [drop_in] = knob.native_files(settings, readings, topology)
    return drop_in.content


def _main() -> None:
    _capture("apply-vm-default")
    from tests.bundles import load_readings

    files = {**KUBELET_FILES, DROP_IN: rendered_drop_in(load_readings("apply-vm-default"))}
    with tempfile.TemporaryDirectory() as bin_dir, _files_created(files):
        stand_in = Path(bin_dir) / "kubelet"
        stand_in.write_text(STAND_IN)
        os.chmod(stand_in, 0o755)
        process = subprocess.Popen([str(stand_in), "--config-dir", DROP_IN_DIR, "--v=2"])
        try:
            time.sleep(0.5)
            _capture("apply-vm-kubelet-dropins")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    _main()
