"""quietcore.k8s"""
