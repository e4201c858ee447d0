"""Apply a quietcore profile with the plain pyinfra CLI.

    pyinfra inventory/lab.py deploys/tune.py --data profile=trading
    pyinfra inventory/lab.py deploys/tune.py --data profile=trading --data reboot=if-needed

Reads each host once, plans exactly as ``quietcore plan`` does and queues the same
operations as ``quietcore apply`` (snapshot first, one operation per knob family, the boot
script, the journal, the controller's copy, and the reboot when ``reboot=if-needed``).
pyinfra shows its own plan and asks before executing (``--dry`` to only look, ``-y`` to skip
the question). Run ``quietcore verify`` afterwards for the declared-vs-actual report.
"""

from __future__ import annotations

from quietcore.converge.deploy import tune_this_host

tune_this_host()
