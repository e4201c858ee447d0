"""Roll a host back to its state before quietcore, with the plain pyinfra CLI.

    pyinfra inventory/lab.py deploys/rollback.py
    pyinfra inventory/lab.py deploys/rollback.py --data reboot=if-needed

Restores every key of the host's snapshot, removes or restores every file quietcore wrote,
then removes the snapshot, exactly as ``quietcore rollback`` does.
"""

from __future__ import annotations

from quietcore.converge.deploy import roll_back_this_host

roll_back_this_host()
