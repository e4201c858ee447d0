"""quietcore.profile"""
