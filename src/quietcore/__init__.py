"""quietcore: make Linux hosts quiet enough for latency-critical work."""

__version__ = "0.1.0"
