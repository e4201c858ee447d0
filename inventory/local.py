"""This machine, without SSH: ``quietcore verify -p trading inventory/local.py``."""

hosts = ["@local"]
