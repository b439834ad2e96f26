"""Methods: the registry of distillation methods, their losses, pseudo-subclass sources (projections, k-means,
oracle) and the student's training-only modules. Imports base, data and cache.
"""
