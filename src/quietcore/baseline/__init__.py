"""Baselines: a verify (and jitter) result saved per host after a known-good apply, and
``quietcore verify --against NAME`` judging later runs by what changed since (docs/baselines.md).

``model`` turns documents into a baseline and back, ``compare`` judges a run against one (both
pure), ``store`` keeps them on the controller, ``commands`` is ``quietcore baseline``.
"""
