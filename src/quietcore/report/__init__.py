"""quietcore.report"""
