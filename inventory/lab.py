"""Every running quietcore lab (``quietcore lab up [--name NAME]``), as pyinfra hosts
``lab-<name>``: root over SSH on 127.0.0.1, each lab's own key and pinned host key.

    quietcore lab up
    quietcore verify -p trading inventory/lab.py

``quietcore lab inventory`` writes the same hosts to a static file.
"""

from quietcore.lab.inventory import running_hosts

hosts = running_hosts()
