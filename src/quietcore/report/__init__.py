"""Renderers of audit results. Pure: they build text or data; the console layer prints."""
