"""Change management: plan, apply, persist at boot, snapshot, journal and rollback."""
