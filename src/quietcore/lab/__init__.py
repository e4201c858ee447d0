"""quietcore.lab"""
