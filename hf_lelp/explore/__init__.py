"""The pseudo-subclass explorer: statistics, figures and an HTML report over a teacher cache. Imports base, cache
and methods.
"""
