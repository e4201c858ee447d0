"""Kubernetes node pools: the manifests a profile renders for a pool (``render``), the node
verifier they run (``node_checks``, ``target/``), and the rolling rollout across a pool's
nodes (``rollout``, ``cluster``, ``inventory``)."""
