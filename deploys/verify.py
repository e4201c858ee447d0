"""Verify a quietcore profile with the plain pyinfra CLI (read-only).

    pyinfra inventory/local.py deploys/verify.py --data profile=network-latency

Runs the same one-round-trip read and the same comparison as ``quietcore verify``, and logs
every setting that is not ok to stderr (pyinfra's ``--json`` output stays clean). Use
``quietcore verify`` for tables, JSON reports and exit codes.
"""

from __future__ import annotations

import logging

from pyinfra.context import host

from quietcore.audit import audit_host, reads_for
from quietcore.facts import HostBundle
from quietcore.profile.load import load_profile
from quietcore.readings import HostRead

log = logging.getLogger("quietcore.deploy")

loaded = load_profile(str(host.data.get("profile", "network-latency")))
spec = reads_for(loaded)
readings = host.get_fact(HostBundle, files=spec.files, commands=spec.commands)
error = None if readings is not None else "the read command failed"
audit = audit_host(loaded, HostRead(host.name, readings, error, 0.0))
if audit.error:
    log.error("%s: %s: %s", host.name, audit.status, audit.error)
for result in audit.results:
    if result.status != "ok":
        log.warning(
            "%s: %s %s: desired %s, actual %s %s",
            host.name,
            result.status,
            result.setting.key,
            result.setting.desired,
            result.actual,
            result.reason,
        )
log.warning("%s: profile %s: %s", host.name, loaded.profile.name, audit.status)
