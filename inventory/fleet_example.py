"""An example fleet inventory (pyinfra format): groups are module-level lists.

Host data (the dicts) sets pyinfra's SSH options per host (``ssh_user``, ``ssh_port``,
``ssh_key``...); quietcore reads every host in parallel, one SSH round trip each. Replace the
addresses with your own.
"""

matching_engines = [
    ("me-01.example.net", {"ssh_user": "root", "ssh_port": 22}),
    ("me-02.example.net", {"ssh_user": "root", "ssh_port": 22}),
]

market_data = [
    "md-01.example.net",
]
