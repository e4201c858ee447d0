"""quietcore.probes"""
