"""Running workloads on a tuned host: ``quietcore exec`` (see ``exec_command``)."""
